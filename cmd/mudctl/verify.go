package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/openmud/mud/mudfetch"
	"github.com/spf13/cobra"
)

// newVerifyCmd: `mudctl verify FILE --signature SIG [--ca PEM]... [--at TIME]`.
// All the work is mudfetch.Verify; this prints its verdict.
func newVerifyCmd() *cobra.Command {
	var (
		sigPath string
		cas     []string
		system  bool
		atFlag  string
	)
	cmd := &cobra.Command{
		Use:   "verify FILE --signature SIG [--ca PEM]... [--at RFC3339-TIME]",
		Short: "Verify a MUD file's detached CMS signature (exit 0 verified, 1 not verified, 2 usage or I/O error)",
		Long: `Verify the detached DER CMS signature of a MUD file over its exact bytes
(RFC 8520 §13): the signature, the signer's chain to one of the --ca trust
anchors, the digitalSignature key usage. The chain is judged now, or at --at
(RFC 3339), never at the signing time the signature claims.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			at := time.Now()
			if atFlag != "" {
				if at, err = time.Parse(time.RFC3339, atFlag); err != nil {
					return &exitError{code: exitUsage, err: fmt.Errorf("--at %q: want an RFC 3339 time such as 2018-10-01T00:00:00Z", atFlag)}
				}
			}
			body, err := os.ReadFile(args[0])
			if err != nil {
				return ioError(err)
			}
			sig, err := os.ReadFile(sigPath)
			if err != nil {
				return ioError(err)
			}
			anchors, err := anchorPool(cas, system)
			if err != nil {
				return ioError(err)
			}
			v := mudfetch.Verify(body, sig, anchors, at, mudfetch.VerifyOptions{})
			if err := printVerdict(cmd.OutOrStdout(), format, [][2]string{{"file", args[0]}, {"signature", sigPath}}, v); err != nil {
				return ioError(err)
			}
			if !v.Verified() {
				return &exitError{code: exitInvalid, silent: true}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sigPath, "signature", "", "the detached DER CMS signature (required)")
	cmd.Flags().StringArrayVar(&cas, "ca", nil, "PEM file of trust anchors for the signer (repeatable)")
	cmd.Flags().BoolVar(&system, "system-roots", false, "also trust the system's root certificates as signer anchors")
	cmd.Flags().StringVar(&atFlag, "at", "", "judge the certificates at this RFC 3339 time instead of now")
	_ = cmd.MarkFlagRequired("signature")
	return cmd
}

// anchorPool returns nil (no anchors: every file pending) when nothing is given.
func anchorPool(files []string, system bool) (*x509.CertPool, error) {
	if len(files) == 0 && !system {
		return nil, nil
	}
	return mudfetch.LoadCertPool(files, system)
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
