package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
	"github.com/spf13/cobra"
)

// newFetchCmd: `mudctl fetch URL [--ca PEM]... [--trust PEM]...`: fetch a MUD
// file as mudd would, verify it, print the verdict.
func newFetchCmd() *cobra.Command {
	var (
		cas, trust   []string
		system       bool
		allowPrivate bool
		allowPrefix  []string
		timeout      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "fetch URL [--ca PEM]... [--trust PEM]...",
		Short: "Fetch and verify a MUD file as mudd would (exit 0 verified, 1 not verified, 2 fetch or usage error)",
		Long: `Fetch a MUD file over HTTPS with mudd's limits and address guard, fetch its
mud-signature, and verify it against the --trust anchors (RFC 8520 §13).
--ca adds CAs for the server's TLS certificate (besides the system roots).`,
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
					return &exitError{code: exitUsage, err: fmt.Errorf("--allow-prefix %q: %v", s, err)}
				}
				cfg.AllowPrefixes = append(cfg.AllowPrefixes, p)
			}
			for _, f := range cas {
				pool, err := readPEMCerts(f)
				if err != nil {
					return ioError(err)
				}
				cfg.ServerCAs = append(cfg.ServerCAs, pool...)
			}
			if cfg.Anchors, err = anchorPool(trust, system); err != nil {
				return ioError(err)
			}
			f, err := mudfetch.New(cfg)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			defer f.Close()
			res, err := f.Fetch(cmd.Context(), mudfetch.Request{URL: args[0]})
			if res == nil {
				return ioError(err)
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
				return ioError(err)
			}
			if err := lintAndExplainFetched(cmd, res); err != nil {
				return err
			}
			if !res.Verdict.Verified() {
				return &exitError{code: exitInvalid, silent: true}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&cas, "ca", nil, "PEM file of extra CAs for the MUD server's TLS certificate (repeatable)")
	cmd.Flags().StringArrayVar(&trust, "trust", nil, "PEM file of trust anchors for the file's signer (repeatable)")
	cmd.Flags().BoolVar(&system, "system-roots", false, "also trust the system's root certificates as signer anchors")
	cmd.Flags().BoolVar(&allowPrivate, "allow-private", false, "allow private (RFC 1918) and ULA server addresses")
	cmd.Flags().StringArrayVar(&allowPrefix, "allow-prefix", nil, "allow server addresses in this prefix whatever their kind, e.g. a lab's 127.0.0.1/32 (repeatable)")
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
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s is not a valid MUD file", res.URL)}
	}
	p, err := policy.Compile(parsed.File, policy.Context{MUDURL: res.URL})
	if err != nil {
		return &exitError{code: exitInvalid, err: fmt.Errorf("%s: %w", res.URL, err)}
	}
	if format != "table" {
		return nil
	}
	if _, err := io.WriteString(cmd.OutOrStdout(), "\n"+policy.Explain(parsed.File, p)); err != nil {
		return ioError(fmt.Errorf("write: %w", err))
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
