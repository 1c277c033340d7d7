package mudctl

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/mudfetch"
	"github.com/spf13/cobra"
)

// signerFlags are the options verify and fetch share for judging a MUD
// file's signer (RFC 8520 §13).
type signerFlags struct {
	trust  []string
	system bool
	at     string
}

func (s *signerFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&s.trust, "trust", nil, "`PEM` file of trust anchors for the MUD file's signer (repeatable)")
	f.BoolVar(&s.system, "system-roots", false, "also trust the system's root certificates as signer anchors")
	f.StringVar(&s.at, "at", "", "judge the signer's certificates at this RFC 3339 `time` instead of now")
}

// time is --at, or now.
func (s *signerFlags) time() (time.Time, error) {
	if s.at == "" {
		return time.Now(), nil
	}
	at, err := time.Parse(time.RFC3339, s.at)
	if err != nil {
		return at, cli.Usage("--at %q: want an RFC 3339 time such as 2018-10-01T00:00:00Z", s.at)
	}
	return at, nil
}

// anchors returns nil (no anchors: every file pending) when neither
// --trust nor --system-roots is given.
func (s *signerFlags) anchors() (*x509.CertPool, error) {
	if len(s.trust) == 0 && !s.system {
		return nil, nil
	}
	pool, err := mudfetch.LoadCertPool(s.trust, s.system)
	if err != nil {
		return nil, cli.IOError(err)
	}
	return pool, nil
}

// newVerifyCmd: `mudctl verify FILE --signature SIG [--trust PEM]... [--at TIME]`.
// All the work is mudfetch.Verify; this prints its verdict.
func newVerifyCmd() *cobra.Command {
	var (
		sigPath string
		signer  signerFlags
	)
	cmd := &cobra.Command{
		Use:   "verify FILE --signature SIG [--trust PEM]... [--system-roots] [--at TIME]",
		Short: "Verify a MUD file's detached CMS signature (exit 0 verified, 1 not verified, 2 usage or I/O error)",
		Long: `Verify the detached DER CMS signature of a MUD file over its exact bytes
(RFC 8520 §13): the signature, the signer's chain to one of the --trust
anchors (or the system's roots with --system-roots), the digitalSignature
key usage. The chain is judged now, or at --at (RFC 3339), never at the
signing time the signature claims. Without --trust or --system-roots no
signer is trusted and the file is not verified.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			at, err := signer.time()
			if err != nil {
				return err
			}
			body, err := os.ReadFile(args[0])
			if err != nil {
				return cli.IOError(err)
			}
			sig, err := os.ReadFile(sigPath)
			if err != nil {
				return cli.IOError(err)
			}
			anchors, err := signer.anchors()
			if err != nil {
				return err
			}
			v := mudfetch.Verify(body, sig, anchors, at, mudfetch.VerifyOptions{})
			if err := printVerdict(cmd.OutOrStdout(), format, [][2]string{{"file", args[0]}, {"signature", sigPath}}, v); err != nil {
				return cli.IOError(err)
			}
			if !v.Verified() {
				return cli.Exit(cli.ExitFailure)
			}
			return nil
		},
	}
	addSignatureFlag(cmd, &sigPath)
	signer.add(cmd)
	addAlias(cmd, "ca", "trust")
	return cmd
}

// addSignatureFlag adds the required --signature of verify and import.
func addSignatureFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "signature", "", "`file` holding the MUD file's detached DER CMS signature (required)")
	_ = cmd.MarkFlagRequired("signature")
}

// printVerdict prints a verdict as a table or one JSON object; head are
// leading key/value lines (file, URL, ...).
func printVerdict(w io.Writer, format string, head [][2]string, v mudfetch.Verdict) error {
	if format == "json" {
		obj := map[string]any{"verified": v.Verified(), "verdict": v}
		for _, kv := range head {
			obj[kv[0]] = kv[1]
		}
		return json.NewEncoder(w).Encode(obj)
	}
	var b strings.Builder
	for _, kv := range head {
		fmt.Fprintf(&b, "%-10s %s\n", kv[0]+":", kv[1])
	}
	fmt.Fprintf(&b, "%-10s %s\n", "verdict:", v.Status)
	if v.SignerSubject != "" {
		fmt.Fprintf(&b, "%-10s %s\n", "signer:", v.SignerSubject)
		fmt.Fprintf(&b, "%-10s %s\n", "issuer:", v.SignerIssuer)
	}
	if len(v.Chain) > 0 {
		fmt.Fprintf(&b, "%-10s %s\n", "chain:", strings.Join(v.Chain, " → "))
	}
	fmt.Fprintf(&b, "%-10s %s\n", "at:", v.At.UTC().Format(time.RFC3339))
	if v.Reason != "" {
		fmt.Fprintf(&b, "%-10s %s\n", "reason:", v.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
