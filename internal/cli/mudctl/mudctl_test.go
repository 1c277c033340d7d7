package mudctl

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmud/mud/api"
)

const corpus = "../../../mudfile/testdata/corpus/"

// testVersion is the version the tests give mudctl.
const testVersion = "v0.0.0-test"

// mudctl runs the CLI in-process as Main does and returns exit code,
// stdout and stderr.
func mudctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(testVersion, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// rows are the lines of a table with runs of spaces made one.
func rows(out string) []string {
	var rs []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rs = append(rs, strings.Join(strings.Fields(l), " "))
	}
	return rs
}

func hasRow(rs []string, prefix string) bool {
	for _, r := range rs {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func rfcExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../../mudfile/testdata/base.json")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLintExitCodes(t *testing.T) {
	good := corpus + "mudmaker/cloud-service.json"                    // valid, one warning (long systeminfo)
	warn := corpus + "mud-visualizer/mudgee_mudfiles/HueBulbMud.json" // valid with warnings
	bad := corpus + "ciralabs-highway/spec/files/mud/toaster_mud.json"
	clean := writeTemp(t, "clean.json", rfcExample(t))
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"clean", []string{"lint", clean}, 0},
		{"clean strict", []string{"lint", "--strict", clean}, 0},
		{"warnings allowed", []string{"lint", warn}, 0},
		{"warnings strict", []string{"lint", "--strict", warn}, 1},
		{"good", []string{"lint", good}, 0},
		{"invalid", []string{"lint", bad}, 1},
		{"valid and invalid", []string{"lint", clean, bad}, 1},
		{"missing file", []string{"lint", filepath.Join(t.TempDir(), "nope.json")}, 2},
		{"missing beats invalid", []string{"lint", bad, filepath.Join(t.TempDir(), "nope.json")}, 2},
		{"no args", []string{"lint"}, 2},
		{"unknown flag", []string{"lint", "--frobnicate", clean}, 2},
		{"bad output format", []string{"-o", "yaml", "lint", clean}, 2},
		{"unknown command", []string{"frobnicate"}, 2},
		{"explain invalid", []string{"explain", bad}, 1},
		{"explain missing", []string{"explain", filepath.Join(t.TempDir(), "nope.json")}, 2},
		{"explain two files", []string{"explain", clean, clean}, 2},
		{"compile invalid", []string{"compile", bad}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := mudctl(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
		})
	}
}

func TestLintJSON(t *testing.T) {
	warn := corpus + "mud-visualizer/mudgee_mudfiles/HueBulbMud.json"
	bad := corpus + "ciralabs-highway/spec/files/mud/toaster_mud.json"
	code, out, _ := mudctl(t, "lint", "-o", "json", warn, bad)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var reports []map[string]json.RawMessage
	for dec.More() {
		var m map[string]json.RawMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("not a JSON object per file: %v\n%s", err, out)
		}
		reports = append(reports, m)
	}
	if len(reports) != 2 {
		t.Fatalf("want 2 objects, got %d", len(reports))
	}
	for i, want := range []struct {
		file  string
		valid bool
	}{{warn, true}, {bad, false}} {
		r := reports[i]
		for _, k := range []string{"file", "valid", "errors", "warnings"} {
			if _, ok := r[k]; !ok {
				t.Errorf("report %d lacks %q", i, k)
			}
		}
		var file string
		var valid bool
		var errs, warns []struct{ Path, Message string }
		_ = json.Unmarshal(r["file"], &file)
		_ = json.Unmarshal(r["valid"], &valid)
		if err := json.Unmarshal(r["errors"], &errs); err != nil {
			t.Errorf("errors is not a list of {path,message}: %v", err)
		}
		if err := json.Unmarshal(r["warnings"], &warns); err != nil {
			t.Errorf("warnings is not a list of {path,message}: %v", err)
		}
		if file != want.file || valid != want.valid {
			t.Errorf("report %d: file %q valid %v, want %q %v", i, file, valid, want.file, want.valid)
		}
		if want.valid && (len(warns) == 0 || len(errs) != 0) {
			t.Errorf("report %d: want warnings only, got %d errors %d warnings", i, len(errs), len(warns))
		}
		if !want.valid && len(errs) == 0 {
			t.Errorf("report %d: invalid without errors", i)
		}
		for _, e := range append(errs, warns...) {
			if !strings.HasPrefix(e.Path, "/") || e.Message == "" {
				t.Errorf("bad issue %+v", e)
			}
		}
	}
	// --strict moves warnings into errors.
	_, out, _ = mudctl(t, "lint", "--strict", "-o", "json", warn)
	var strict struct {
		Valid    bool
		Errors   []any
		Warnings []any
	}
	if err := json.Unmarshal([]byte(out), &strict); err != nil {
		t.Fatal(err)
	}
	if strict.Valid || len(strict.Errors) == 0 || len(strict.Warnings) != 0 {
		t.Errorf("--strict: %+v", strict)
	}
}

// TestExplain: the policy in plain words, and what the file says about the
// device (RFC 8520 §3: systeminfo, documentation, is-supported).
func TestExplain(t *testing.T) {
	src := strings.Replace(rfcExample(t), `"is-supported": true`, `"is-supported": false, "documentation": "https://lighting.example.com/docs"`, 1)
	f := writeTemp(t, "bulb.json", src)
	code, out, errOut := mudctl(t, "explain", f)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"The BMS Example Light Bulb",
		"may open TCP connections to port 443 of test.example.com",
		"https://lighting.example.com/docs",
		"Supported:      NO",
		"everything not listed is dropped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = mudctl(t, "explain", "-o", "json", f)
	var v struct {
		MUD struct {
			IsSupported bool `json:"is_supported"`
		}
		Rules []struct{ Direction, Name, Text string }
	}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("explain -o json: exit %d, %v\n%s", code, err, out)
	}
	if v.MUD.IsSupported || len(v.Rules) != 10 || v.Rules[0].Text == "" {
		t.Errorf("explain json: %+v", v)
	}
}

func TestCompile(t *testing.T) {
	f := writeTemp(t, "bulb.json", rfcExample(t))
	code, out, errOut := mudctl(t, "compile", f)
	if code != 0 || !strings.Contains(out, "peer=dns:test.example.com proto=tcp dport=443 initiated=from-device") {
		t.Errorf("compile text: exit %d\n%s%s", code, out, errOut)
	}
	// -o json: the API's rule views, every enum by its name.
	code, out, _ = mudctl(t, "compile", "-o", "json", f)
	var p api.CompiledPolicy
	if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil {
		t.Fatalf("compile -o json: exit %d, %v", code, err)
	}
	if p.MUDURL != "https://lighting.example.com/lightbulb2000" || len(p.FromDevice) != 5 || p.FromDevice[0].Rule.Peer.Value != "test.example.com" ||
		!strings.Contains(p.FromDevice[0].Text, "test.example.com") {
		t.Errorf("compile json: %+v", p)
	}
	for _, want := range []string{`"family": "ipv4"`, `"kind": "dns-name"`, `"protocol": "tcp"`, `"verdict": "accept"`, `"initiated": "from-device"`} {
		if !strings.Contains(out, want) {
			t.Errorf("compile -o json lacks %s:\n%s", want, out)
		}
	}
	for _, number := range []string{`"family": 1`, `"kind": 1`, `"verdict": 1`, `"protocol": 6`, `"initiated": 1`} {
		if strings.Contains(out, number) {
			t.Errorf("compile -o json has a number for an enum, %s:\n%s", number, out)
		}
	}
	// --nft: the ruleset for a sample device, from the enforcer's own
	// renderer: an allow-only policy as acl elements (listed by ACE, the DNS
	// name as a peer id), dispatch by MAC and address maps, default deny.
	code, out, errOut = mudctl(t, "compile", "--nft", f)
	if code != 0 {
		t.Fatalf("compile --nft: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"table inet mud", "table bridge mud", "0x00000010 is in neither out_chain nor in_chain", "meta secmark set ether saddr map @from_dev", "= dns:test.example.com",
		"<dns:test.example.com> . 0x0a . tcp . 443  /* mud-76100-v6fr/cl0-frdev */", "drop"} {
		if !strings.Contains(out, want) {
			t.Errorf("compile --nft lacks %q:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := mudctl(t, "--version")
	if code != 0 || strings.TrimSpace(out) != "mudctl "+testVersion {
		t.Errorf("--version: exit %d %q", code, out)
	}
}

// Daemon commands find mudd's socket in --socket, else $MUDCTL_SOCKET,
// else where mudd's configuration puts it (OpenWrt uses /var/run/mud),
// else at the packaged default.
func TestResolveSocket(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mudd.yaml")
	if err := os.WriteFile(cfg, []byte("socket: /var/run/mud/mudd.sock\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("sockt: /x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ flag, env, path, want string }{
		{"/tmp/flag.sock", "/tmp/env.sock", cfg, "/tmp/flag.sock"},
		{"", "/tmp/env.sock", cfg, "/tmp/env.sock"},
		{"", "", cfg, "/var/run/mud/mudd.sock"},
		{"", "", filepath.Join(dir, "missing.yaml"), DefaultSocket},
		{"", "", broken, DefaultSocket},
	} {
		if got := resolveSocket(tc.flag, tc.env, tc.path); got != tc.want {
			t.Errorf("resolveSocket(%q, %q, %s) = %q, want %q", tc.flag, tc.env, filepath.Base(tc.path), got, tc.want)
		}
	}
}

// The top-level help documents the exit codes and where the socket is
// found; --socket names its fallbacks rather than a default read at start.
func TestHelpDocumentsExitCodesAndSocket(t *testing.T) {
	t.Setenv("MUDCTL_SOCKET", "/tmp/from-env.sock")
	code, out, _ := mudctl(t, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, want := range []string{"Exit status:", "  1  a finding or a refusal", "  2  a usage error", "$MUDCTL_SOCKET", "/etc/mud/mudd.yaml",
		"Commands that need no daemon:", "Commands that talk to mudd:"} {
		if !strings.Contains(out, want) {
			t.Errorf("mudctl --help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "/tmp/from-env.sock") {
		t.Errorf("help shows the environment's socket as a default:\n%s", out)
	}
}

// Only errors cobra finds before a command runs are usage errors (exit 2);
// a group command given an unknown subcommand is one of them.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"device", "frobnicate"},
		{"controllers", "frobnicate"},
		{"verify", "x.json"},                 // --signature is required
		{"verify", "--frobnicate", "x.json"}, // unknown flag
		{"frobnicate"},
	} {
		code, _, errOut := mudctl(t, args...)
		if code != 2 || !strings.Contains(errOut, "mudctl: ") || !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("%v: exit %d, want 2 with a usage hint; stderr: %s", args, code, errOut)
		}
	}
	if code, out, _ := mudctl(t, "device"); code != 0 || !strings.Contains(out, "show") {
		t.Errorf("device alone: exit %d, want its help:\n%s", code, out)
	}
}
