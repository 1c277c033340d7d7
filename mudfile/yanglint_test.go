package mudfile

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// yangModules are the schemas a MUD file is validated against (copied from
// YangModels/yang into testdata/yang). Transparency and the TLS profile
// flag are loaded so that files using those extensions can pass.
var yangModules = []string{
	"ietf-mud@2019-01-28.yang",
	"ietf-acldns@2019-01-28.yang",
	"ietf-mud-transparency@2023-10-10.yang",
	"ietf-mud-tls@2025-04-18.yang",
}

// yangFeatures enables exactly what RFC 8520 §2 allows: IPv4/IPv6, TCP, UDP
// and ICMP matching, and no Ethernet matching.
const yangFeatures = "ietf-access-control-list:match-on-ipv4,match-on-ipv6,match-on-tcp,match-on-udp,match-on-icmp,ipv4,ipv6"

// yanglintExceptions are corpus files on which lint and libyang disagree on
// purpose, with the reason. Keys are paths relative to testdata/corpus.
var yanglintExceptions = map[string]string{}

func findYanglint(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("yanglint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("yanglint not found (CI installs libyang2-tools via scripts/install-deps.sh): %v", err)
		}
		t.Skip("yanglint not installed (Debian libyang2-tools); the differential test needs it")
	}
	return path
}

// yanglintAccepts runs yanglint on one file. It is exec'd directly with
// arguments, never through a shell.
func yanglintAccepts(t *testing.T, bin, file string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"-p", "testdata/yang", "-t", "config", "-F", yangFeatures}
	for _, m := range yangModules {
		args = append(args, filepath.Join("testdata/yang", m))
	}
	args = append(args, file)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("yanglint timed out on %s", file)
	}
	if err != nil {
		if _, isExit := err.(*exec.ExitError); !isExit {
			t.Fatalf("run yanglint: %v", err)
		}
		return false, string(out)
	}
	// Belt and braces: some yanglint errors (unknown input format) still
	// exit 0.
	if strings.Contains(string(out), "YANGLINT[E]") || strings.Contains(string(out), "libyang err") {
		return false, string(out)
	}
	return true, string(out)
}

// TestYanglintSanity makes sure the differential test can fail: the RFC
// example passes, and the same file with port 70000 does not.
func TestYanglintSanity(t *testing.T) {
	bin := findYanglint(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	d := loadBase(t)
	if err := os.WriteFile(good, d.bytes(t), 0o644); err != nil {
		t.Fatal(err)
	}
	d.tcp(1)["destination-port"] = map[string]any{"operator": "eq", "port": 70000}
	if err := os.WriteFile(bad, d.bytes(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, out := yanglintAccepts(t, bin, good); !ok {
		t.Errorf("yanglint rejects the RFC 8520 §9 example: %s", out)
	}
	if ok, _ := yanglintAccepts(t, bin, bad); ok {
		t.Error("yanglint accepts port 70000")
	}
}

// TestYanglintDifferential: every corpus file lint --strict accepts,
// yanglint accepts; every file yanglint accepts, lint accepts.
func TestYanglintDifferential(t *testing.T) {
	bin := findYanglint(t)
	for _, rel := range corpusFiles(t) {
		t.Run(rel, func(t *testing.T) {
			file := filepath.Join("testdata/corpus", rel)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			res := Parse(data)
			strictOK := res.Valid() && len(res.Warnings()) == 0
			// yanglint picks the format from the extension and exits 0 on
			// one it does not know (MUDFILE.NEST, .json.save): always give
			// it a .json name.
			tmp := filepath.Join(t.TempDir(), "input.json")
			if err := os.WriteFile(tmp, data, 0o644); err != nil {
				t.Fatal(err)
			}
			yangOK, out := yanglintAccepts(t, bin, tmp)
			if why, ok := yanglintExceptions[rel]; ok {
				t.Logf("documented exception: %s", why)
				return
			}
			if strictOK && !yangOK {
				t.Errorf("lint --strict accepts, yanglint rejects:\n%s", out)
			}
			if yangOK && !res.Valid() {
				t.Errorf("yanglint accepts, lint rejects: %v", res.Errors())
			}
		})
	}
}
