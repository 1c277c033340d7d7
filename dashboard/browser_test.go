package dashboard

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/api/apitest"
)

// findChromium is Debian's chromium (scripts/install-deps.sh installs it).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("no chromium on PATH: the browser test needs Debian's chromium (scripts/install-deps.sh installs it; with CI set this test fails instead)")
	}
	t.Fatal("no chromium on PATH (scripts/install-deps.sh installs it)")
	return ""
}

// artifacts is where the screenshots go: $MUD_ARTIFACTS, for CI to keep,
// or a temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("MUD_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowser drives headless Chromium through the dashboard as an
// administrator would: log in, see the devices (with their gateway), open one and its policy
// picture, approve the pending device, read the events. No page may log
// an error to the console, throw, or open a dialog (the hostile device's
// strings must stay text), and each page is saved as a screenshot.
func TestBrowser(t *testing.T) {
	chromium := findChromium(t)
	needDotInCI(t)
	e := newEnvOn(t, false, "gw1") // a gateway of a fleet: the Gateway column is shown
	e.fake.Publish(macHostile, "state", xssEvent)
	dir := artifacts(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-gpu", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses to run as root
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()

	var mu sync.Mutex
	var problems []string
	report := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, s)
	}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				report("console " + string(ev.Type))
			}
		case *runtime.EventExceptionThrown:
			report("exception: " + ev.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				report("log " + string(ev.Entry.Level) + ": " + ev.Entry.Text + " " + ev.Entry.URL)
			}
		case *cdppage.EventJavascriptDialogOpening:
			report("dialog opened: " + ev.Message)
		}
	}))
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(dir, "dashboard-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	do("open the login page", chromedp.Navigate(e.ts.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#password")))
	shot("login")
	do("log in", chromedp.SendKeys(chromedp.CSS("#password"), testPassword),
		chromedp.Click(chromedp.CSS("form.login button")),
		chromedp.WaitVisible(chromedp.CSS("table.devices")))
	if head, gw := text("table.devices thead"), text("table.devices td.gateway"); !strings.HasPrefix(strings.TrimSpace(head), "Gateway") || gw != "gw1" {
		t.Errorf("the devices page's first column is %q, its first device's gateway %q; want Gateway and gw1", head, gw)
	}
	devices := text("table.devices")
	for _, want := range []string{apitest.MACEnforced, apitest.MACPending, macHostile, "Example Lighting", "pending-approval", xssHost} {
		if !strings.Contains(devices, want) {
			t.Errorf("the devices page does not show %q:\n%s", want, devices)
		}
	}
	shot("devices")

	do("open the enforced device", chromedp.Click(chromedp.CSS(`a[href="/devices/`+apitest.MACEnforced+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.peers")))
	if peers := text("table.peers"); !strings.Contains(peers, "service.example.com") {
		t.Errorf("the device's peers do not name service.example.com:\n%s", peers)
	}
	if vs := text("table.violations"); !strings.Contains(vs, "198.51.100.23 (telemetry.example.net)") || !strings.Contains(vs, "8443") {
		t.Errorf("the device's violation is not shown:\n%s", vs)
	}
	if e.srv.hasDot() {
		do("wait for the policy picture", chromedp.WaitVisible(chromedp.CSS("figure.policy img")))
		loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(async () => { const i = document.querySelector("figure.policy img"); await i.decode(); return i.naturalWidth > 100; })()`,
			chromedp.EvalAwaitPromise))
		if err != nil || !loaded {
			t.Errorf("the policy picture did not load: %v", err)
		}
	}
	shot("device")

	do("open the hostile device", chromedp.Navigate(e.ts.URL+"/devices/"+macHostile), chromedp.WaitVisible(chromedp.CSS("table.peers")))
	if dl := text("dl.device"); !strings.Contains(dl, xssURL) {
		t.Errorf("the hostile MUD URL is not shown as text:\n%s", dl)
	}
	shot("device-hostile")

	do("open the pending approvals", chromedp.Click(chromedp.CSS(`a[href="/pending"]`)),
		chromedp.WaitVisible(chromedp.CSS("section.pending")))
	shot("pending")
	do("approve the pending device", chromedp.Click(chromedp.CSS(`form[action="/devices/`+apitest.MACPending+`/approve"] button`)),
		chromedp.WaitVisible(chromedp.CSS("p.flash")))
	if flash := text("p.flash"); !strings.Contains(flash, apitest.MACPending+": MUD file approved") {
		t.Errorf("after approving the page says %q", flash)
	}
	if st := e.state(apitest.MACPending); st != api.StateEnforced {
		t.Errorf("after approving in the browser the device is %s, want enforced", st)
	}
	shot("approved")

	do("open the events", chromedp.Click(chromedp.CSS(`a[href="/events"]`)), chromedp.WaitVisible(chromedp.CSS("table.events")))
	if evs := text("table.events"); !strings.Contains(evs, "pending-approval -> enforced") {
		t.Errorf("the events do not show the approval:\n%s", evs)
	}
	shot("events")

	do("log out", chromedp.Click(chromedp.CSS("form.logout button")), chromedp.WaitVisible(chromedp.CSS("#password")))

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser: %s", p)
	}
}

// needDotInCI fails in CI when Graphviz is missing: the picture is part
// of what the browser test checks there.
func needDotInCI(t *testing.T) {
	if _, err := exec.LookPath("dot"); err != nil && os.Getenv("CI") != "" {
		t.Fatal("graphviz's dot is not on PATH (scripts/install-deps.sh installs it)")
	}
}
