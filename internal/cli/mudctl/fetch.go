package mudctl

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
	"github.com/spf13/cobra"
)

// newFetchCmd: `mudctl fetch URL [--trust PEM]... [--server-ca PEM]...`:
// fetch a MUD file as mudd would, verify it, print the verdict.
func newFetchCmd() *cobra.Command {
	var (
		serverCAs    []string
		signer       signerFlags
		allowPrivate bool
		allowPrefix  []string
		timeout      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "fetch URL [--trust PEM]... [--system-roots] [--at TIME] [--server-ca PEM]...",
		Short: "Fetch and verify a MUD file as mudd would (exit 0 verified, 1 not verified or invalid, 2 fetch, usage or I/O error)",
		Long: `Fetch a MUD file over HTTPS with mudd's limits and address guard, fetch its
mud-signature, and verify it as verify does (RFC 8520 §13): against the
--trust anchors (or the system's roots with --system-roots), judged now or
at --at. The file is then linted, and explained when it is valid.

--server-ca adds CAs for the MUD server's TLS certificate, besides the
system roots; the TLS certificate is always judged now.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			cfg := mudfetch.Config{Timeout: timeout, AllowPrivate: allowPrivate}
			for _, s := range allowPrefix {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return cli.Usage("--allow-prefix %q: %v", s, err)
				}
				cfg.AllowPrefixes = append(cfg.AllowPrefixes, p)
			}
			if signer.at != "" {
				at, err := signer.time()
				if err != nil {
					return err
				}
				cfg.Now = func() time.Time { return at }
			}
			for _, f := range serverCAs {
				pool, err := readPEMCerts(f)
				if err != nil {
					return cli.IOError(err)
				}
				cfg.ServerCAs = append(cfg.ServerCAs, pool...)
			}
			if cfg.Anchors, err = signer.anchors(); err != nil {
				return err
			}
			f, err := mudfetch.New(cfg)
			if err != nil {
				return &cli.ExitError{Code: cli.ExitUsage, Err: err}
			}
			defer f.Close()
			res, err := f.Fetch(cmd.Context(), mudfetch.Request{URL: args[0]})
			if res == nil {
				return cli.IOError(err)
			}
			head := [][2]string{
				{"url", res.URL},
				{"final-url", res.FinalURL},
				{"size", strconv.Itoa(len(res.Body)) + " bytes"},
				{"sig-url", res.SignatureURL},
				{"refresh", res.NextRefresh().UTC().Format(time.RFC3339)},
			}
			for _, w := range res.Warnings {
				head = append(head, [2]string{"warning", w})
			}
			if err := printVerdict(cmd.OutOrStdout(), format, head, res.Verdict); err != nil {
				return cli.IOError(err)
			}
			if err := lintAndExplainFetched(cmd, res); err != nil {
				return err
			}
			if !res.Verdict.Verified() {
				return cli.Exit(cli.ExitFailure)
			}
			return nil
		},
	}
	signer.add(cmd)
	cmd.Flags().StringArrayVar(&serverCAs, "server-ca", nil, "`PEM` file of extra CAs for the MUD server's TLS certificate (repeatable)")
	addAlias(cmd, "ca", "server-ca")
	cmd.Flags().BoolVar(&allowPrivate, "allow-private", false, "allow private (RFC 1918) and ULA server addresses")
	cmd.Flags().StringArrayVar(&allowPrefix, "allow-prefix", nil, "allow server addresses in this `prefix` whatever their kind, e.g. a lab's 127.0.0.1/32 (repeatable)")
	cmd.Flags().DurationVar(&timeout, "timeout", mudfetch.DefaultTimeout, "limit for the whole fetch")
	return cmd
}

// lintAndExplainFetched lints the fetched bytes as `lint` does (findings on
// stderr) and, for a valid file in table output, explains it as `explain`
// does. An invalid file is exit 1; it never turns an unverified file's exit
// code into 0.
func lintAndExplainFetched(cmd *cobra.Command, res *mudfetch.Result) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	parsed := mudfile.Parse(res.Body)
	printFindings(cmd.ErrOrStderr(), res.URL, parsed)
	if !parsed.Valid() {
		return cli.Failure(fmt.Errorf("%s is not a valid MUD file", res.URL))
	}
	p, err := policy.Compile(parsed.File, policy.Context{MUDURL: res.URL})
	if err != nil {
		return cli.Failure(fmt.Errorf("%s: %w", res.URL, err))
	}
	if format != "table" {
		return nil
	}
	if _, err := io.WriteString(cmd.OutOrStdout(), "\n"+policy.Explain(parsed.File, p)); err != nil {
		return cli.IOError(fmt.Errorf("write: %w", err))
	}
	return nil
}

func readPEMCerts(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	certs, err := mudfetch.ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return certs, nil
}
