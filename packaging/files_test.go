package packaging

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/openmud/mud/config"
)

// The shipped configurations pass mudd's own validation, state every key so
// an admin sees what can be set, and keep mudd's defaults except where a
// comment in the file says why not.
func TestShippedConfigs(t *testing.T) {
	for _, tc := range []struct {
		path string
		// differ are the keys that may differ from config.Default().
		differ func(c *config.Config)
	}{
		{"mudd.yaml", func(c *config.Config) { c.Interfaces, c.SocketGroup, c.Trust.Anchors = nil, "", nil }},
		{"openwrt/mudd/files/mudd.yaml", func(c *config.Config) {
			c.Interfaces, c.Trust.Anchors = nil, nil
			c.StateDir, c.Socket = config.Default().StateDir, config.Default().Socket
		}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			cfg, err := config.Load(tc.path)
			if err != nil {
				t.Fatalf("the shipped configuration does not load: %v", err)
			}
			if len(cfg.Interfaces) == 0 {
				t.Error("no interfaces: mudd would enforce nothing")
			}
			tc.differ(&cfg)
			if def := config.Default(); !reflect.DeepEqual(cfg, normaliseEmpty(def, cfg)) {
				t.Errorf("the shipped values drifted from config.Default():\n got %+v\nwant %+v", cfg, def)
			}
			data, err := os.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			var root yaml.Node
			if err := yaml.Unmarshal(data, &root); err != nil {
				t.Fatal(err)
			}
			for _, key := range missingKeys(root.Content[0], reflect.TypeOf(config.Config{}), "") {
				t.Errorf("key %s is not shown in %s: show every configuration key, with its default, in the packaged configurations", key, tc.path)
			}
		})
	}
}

// normaliseEmpty returns def with the empty-but-present collections of got
// (`controllers: {}`, `anchors: []`) in place of def's nil ones, so that
// stating an empty default counts as the default.
func normaliseEmpty(def, got config.Config) config.Config {
	var walk func(d, g reflect.Value)
	walk = func(d, g reflect.Value) {
		switch d.Kind() {
		case reflect.Struct:
			for i := range d.NumField() {
				walk(d.Field(i), g.Field(i))
			}
		case reflect.Slice, reflect.Map:
			if d.Len() == 0 && g.Len() == 0 {
				d.Set(g)
			}
		}
	}
	walk(reflect.ValueOf(&def).Elem(), reflect.ValueOf(got))
	return def
}

// missingKeys lists the YAML keys of t (recursively through structs) that
// the mapping n does not have.
func missingKeys(n *yaml.Node, t reflect.Type, path string) []string {
	var missing []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		full := name
		if path != "" {
			full = path + "." + name
		}
		var v *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == name {
				v = n.Content[j+1]
			}
		}
		switch {
		case v == nil:
			missing = append(missing, full)
		case f.Type.Kind() == reflect.Struct && v.Kind == yaml.MappingNode && f.Type.PkgPath() != "net/netip":
			missing = append(missing, missingKeys(v, f.Type, full)...)
		}
	}
	return missing
}

// unit is a parsed systemd unit file: section → key → values in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: want one value, have %q", section, key, v)
	}
	return v[0]
}

// The unit, the sysusers file, the shipped configuration and the package
// agree on names and paths, and the unit gives mudd exactly what it needs.
func TestSystemdUnitMatchesMudd(t *testing.T) {
	u := readUnit(t, "systemd/mudd.service")
	cfg, err := config.Load("mudd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.one(t, "Service", "Type"); got != "notify" {
		t.Errorf("Type=%s: mudd reports readiness with sd_notify (READY=1), so Type=notify", got)
	}
	if u.one(t, "Service", "WatchdogSec") == "" {
		t.Error("no WatchdogSec: mudd's watchdog pings would be ignored")
	}
	conf := "--config " + config.DefaultPath
	if got := u.one(t, "Service", "ExecStart"); got != "/usr/sbin/mudd "+conf {
		t.Errorf("ExecStart=%s", got)
	}
	if got := u.one(t, "Service", "ExecStartPre"); got != "/usr/sbin/mudd check-config "+conf {
		t.Errorf("ExecStartPre=%s, want the configuration checked before start", got)
	}
	if got := u.one(t, "Service", "ExecReload"); got != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%s, want SIGHUP to the main process, no shell", got)
	}
	// Capabilities: the same two in the ambient and the bounding set.
	want := []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}
	for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		got := strings.Fields(u.one(t, "Service", key))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s=%v, want %v", key, got, want)
		}
	}
	if user := u.one(t, "Service", "User"); user == "" || user == "root" {
		t.Errorf("User=%q: mudd runs unprivileged with capabilities", user)
	}
	// The directories systemd creates are the ones mudd uses.
	if dir := "/var/lib/" + u.one(t, "Service", "StateDirectory"); dir != cfg.StateDir {
		t.Errorf("StateDirectory is %s, state_dir is %s", dir, cfg.StateDir)
	}
	if dir := "/run/" + u.one(t, "Service", "RuntimeDirectory"); dir != filepath.Dir(cfg.Socket) {
		t.Errorf("RuntimeDirectory is %s, the socket is %s", dir, cfg.Socket)
	}
	if dir := "/etc/" + u.one(t, "Service", "ConfigurationDirectory"); dir != filepath.Dir(config.DefaultPath) {
		t.Errorf("ConfigurationDirectory is %s, the configuration is %s", dir, config.DefaultPath)
	}
	if got := u.one(t, "Service", "SupplementaryGroups"); got != cfg.SocketGroup {
		t.Errorf("SupplementaryGroups=%s but socket_group is %q: mudd could not give the socket to it", got, cfg.SocketGroup)
	}
	if got := u.one(t, "Service", "RestrictAddressFamilies"); got != "AF_UNIX AF_NETLINK AF_PACKET AF_INET AF_INET6" {
		t.Errorf("RestrictAddressFamilies=%s", got)
	}
	for _, key := range []string{"PrivateUsers", "PrivateNetwork"} {
		if v := u["Service"][key]; v != nil {
			t.Errorf("%s set: mudd's capabilities must count in the host's network namespace", key)
		}
	}

	// sysusers.d creates the user, its group, and the socket group.
	sysusers, err := os.ReadFile("systemd/mudd.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^u ` + regexp.QuoteMeta(u.one(t, "Service", "User")) + ` `,
		`(?m)^g ` + regexp.QuoteMeta(cfg.SocketGroup) + ` `,
		`(?m)^m ` + regexp.QuoteMeta(u.one(t, "Service", "User")) + ` ` + regexp.QuoteMeta(cfg.SocketGroup) + `$`,
	} {
		if !regexp.MustCompile(re).Match(sysusers) {
			t.Errorf("sysusers file has no line matching %s", re)
		}
	}
}

// The OpenWrt feed package (built inside an OpenWrt tree) and the .ipk nfpm
// builds install the same files from the same sources.
func TestOpenWrtFeedMatchesIPK(t *testing.T) {
	// The feed package for a stand-in tarball: the files it installs do
	// not depend on the source.
	dir := t.TempDir()
	tarball := filepath.Join(dir, Project.Name+"-1.2.3.tar.gz")
	if err := os.WriteFile(tarball, []byte("source"), 0o644); err != nil {
		t.Fatal(err)
	}
	feedDir, err := OpenWrtFeed(".", tarball, "1.2.3", dir)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(feedDir, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	// $(INSTALL_BIN) ./files/mudd.init $(1)/etc/init.d/mudd
	install := regexp.MustCompile(`\$\(INSTALL_(?:BIN|CONF|DATA)\) (\S+) \$\(1\)(\S+)`)
	feed := map[string]string{}
	for _, m := range install.FindAllStringSubmatch(string(mk), -1) {
		src := m[1]
		if strings.HasPrefix(src, "./files/") {
			src = "packaging/openwrt/mudd/files/" + strings.TrimPrefix(src, "./files/")
		} else {
			src = "binary " + filepath.Base(src)
		}
		feed[m[2]] = src
	}
	// $(LN) ../sbin/mudd $(1)/usr/bin/mudctl
	for _, m := range regexp.MustCompile(`\$\(LN\) (\S+) \$\(1\)(\S+)`).FindAllStringSubmatch(string(mk), -1) {
		feed[m[2]] = "link to " + m[1]
	}
	data, err := os.ReadFile("openwrt/nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Contents []struct {
			Src  string `yaml:"src"`
			Dst  string `yaml:"dst"`
			Type string `yaml:"type"`
		} `yaml:"contents"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	ipk := map[string]string{}
	for _, c := range cfg.Contents {
		if c.Type == "dir" {
			continue
		}
		src := c.Src
		switch {
		case c.Type == "symlink":
			src = "link to " + src
		case strings.HasPrefix(src, "${BINDIR}/"):
			src = "binary " + strings.TrimPrefix(src, "${BINDIR}/")
		}
		ipk[c.Dst] = src
	}
	if !reflect.DeepEqual(feed, ipk) {
		t.Errorf("the feed Makefile installs\n %v\nthe ipk\n %v", feed, ipk)
	}
	for _, src := range feed {
		if !strings.HasPrefix(src, "binary ") && !strings.HasPrefix(src, "link to ") {
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("installed file missing: %v", err)
			}
		}
	}
	if !strings.Contains(string(mk), "/etc/mud/mudd.yaml\n") {
		t.Error("the feed package does not list /etc/mud/mudd.yaml in conffiles")
	}
}

// debian/copyright is a machine-readable copyright file (DEP-5) that states
// the project's license for all its files, with the license's text.
func TestDebianCopyright(t *testing.T) {
	data, err := os.ReadFile("debian/copyright")
	if err != nil {
		t.Fatal(err)
	}
	paras := parseDEP5(t, string(data))
	if len(paras) < 3 {
		t.Fatalf("want a header, a Files and a License paragraph, have %d paragraphs", len(paras))
	}
	header := paras[0]
	for field, want := range map[string]string{
		"Format":           "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
		"Upstream-Name":    Project.Name,
		"Upstream-Contact": Project.Maintainer,
		"Source":           Project.Homepage,
	} {
		if got := header[field]; got != want {
			t.Errorf("header %s: %q, want %q", field, got, want)
		}
	}
	var all map[string]string
	licenses := map[string]string{}
	for _, p := range paras[1:] {
		switch {
		case p["Files"] == "*":
			all = p
		case p["Files"] == "" && p["License"] != "":
			name, text, _ := strings.Cut(p["License"], "\n")
			licenses[name] = text
		}
	}
	if all == nil {
		t.Fatal("no Files: * paragraph")
	}
	if all["Copyright"] == "" {
		t.Error("Files: * has no Copyright")
	}
	if all["License"] != Project.License {
		t.Errorf("Files: * has License %q, want %s", all["License"], Project.License)
	}
	if text := licenses[Project.License]; !strings.Contains(text, "Apache License, Version 2.0") ||
		!strings.Contains(text, "/usr/share/common-licenses/"+Project.License) {
		t.Errorf("no stand-alone License: %s paragraph with its notice and the path of its full text; have %q", Project.License, text)
	}
	// The license the packages state is the repository's.
	license, err := os.ReadFile("../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(license), "Apache License\n") || !strings.Contains(string(license), "Version 2.0, January 2004") {
		t.Errorf("LICENSE is not the Apache License 2.0, which debian/copyright and Project state")
	}
}

// parseDEP5 splits a DEP-5 file into paragraphs of fields. A continuation
// line (leading space) joins its field's value with a newline; " ." is an
// empty line.
func parseDEP5(t *testing.T, s string) []map[string]string {
	t.Helper()
	var paras []map[string]string
	var cur map[string]string
	var last string
	for i, line := range strings.Split(s, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			cur = nil
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil || last == "" {
				t.Fatalf("line %d: continuation outside a field: %q", i+1, line)
			}
			if l := strings.TrimSpace(line); l != "." {
				cur[last] += "\n" + l
			} else {
				cur[last] += "\n"
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("line %d: not a field: %q", i+1, line)
			}
			if cur == nil {
				cur = map[string]string{}
				paras = append(paras, cur)
			}
			if _, dup := cur[k]; dup {
				t.Fatalf("line %d: field %s twice in a paragraph", i+1, k)
			}
			cur[k], last = strings.TrimSpace(v), k
		}
	}
	return paras
}
