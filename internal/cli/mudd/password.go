package mudd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/cli"
)

// maxPasswordInput bounds what hash-password reads from a pipe.
const maxPasswordInput = 4096

func hashPasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-password",
		Short: "Print the bcrypt hash of the dashboard password read from the terminal or stdin",
		Long: `Read the web dashboard's administrator password and print its bcrypt
hash, for dashboard.password_hash in mudd's configuration.

On a terminal the password is asked twice, without echo. Otherwise it is
the first line of standard input (its line ending removed), e.g.

    printf '%s\n' "$PASSWORD" | mudd hash-password

The password must be 8 to 72 bytes long (bcrypt's limit).

Exit status: 0 printed, 1 the password was refused or could not be read,
2 usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return cli.Failure(err)
			}
			h, err := hashPassword(pw)
			if err != nil {
				return cli.Failure(err)
			}
			if _, err := io.WriteString(cmd.OutOrStdout(), h+"\n"); err != nil {
				return cli.IOError(err)
			}
			return nil
		},
	}
}

// readPassword reads the password: from a terminal twice without echo,
// prompting on prompt, else the first line of in.
func readPassword(in io.Reader, prompt io.Writer) ([]byte, error) {
	if f, ok := in.(*os.File); ok {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return readTerminal(f, t, prompt)
		}
	}
	b, err := io.ReadAll(io.LimitReader(in, maxPasswordInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	if len(b) > maxPasswordInput {
		return nil, fmt.Errorf("reading the password: more than %d bytes on standard input", maxPasswordInput)
	}
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("reading the password: standard input has more than one line")
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, errors.New("reading the password: standard input is empty")
	}
	return line, nil
}

// readTerminal asks for the password twice with the terminal's echo off,
// restoring the terminal's settings t afterwards.
func readTerminal(f *os.File, t *unix.Termios, prompt io.Writer) ([]byte, error) {
	fd := int(f.Fd())
	quiet := *t
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, fmt.Errorf("turning the terminal's echo off: %w", err)
	}
	defer func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, t) }()
	r := bufio.NewReaderSize(f, maxPasswordInput)
	ask := func(what string) ([]byte, error) {
		fmt.Fprint(prompt, what)
		line, err := r.ReadSlice('\n')
		fmt.Fprintln(prompt)
		if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
			return nil, fmt.Errorf("reading the password: %w", err)
		}
		return bytes.Clone(bytes.TrimRight(line, "\r\n")), nil
	}
	pw, err := ask("Password: ")
	if err != nil {
		return nil, err
	}
	again, err := ask("Again: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the two passwords differ")
	}
	return pw, nil
}
