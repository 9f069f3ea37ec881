// Package browsertest starts Debian's headless Chromium for tests through
// chromedp, with the flags this closed-network machine needs, and records
// every network request so tests can assert nothing leaves loopback.
package browsertest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"kiosk/internal/testmedia"
)

// Browser is one headless Chromium tab.
type Browser struct {
	Ctx      context.Context
	mu       sync.Mutex
	requests []string
	console  []string
}

// Start launches Chromium. It skips only under -short and fails when
// Chromium is missing ("make deps" installs it).
func Start(t testing.TB) *Browser {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping headless Chromium test")
	}
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not installed (%v): run `make deps`", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &Browser{}
	// The listener runs in the tab's message loop: record and return.
	ctx, cancelC := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *cdplog.EventEntryAdded:
			// The browser's own errors: failed loads, 4xx/5xx answers,
			// blocked content, which never reach console.error.
			if e.Entry.Level == cdplog.EntryLevelError {
				b.console = append(b.console, fmt.Sprintf("%s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		case *network.EventLoadingFailed:
			if !e.Canceled { // a stream the page closes on purpose is cancelled, not failed
				b.console = append(b.console, fmt.Sprintf("network: %s %s", e.Type, e.ErrorText))
			}
		case *runtime.EventExceptionThrown:
			b.console = append(b.console, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, fmt.Sprint(a.Value))
				}
				b.console = append(b.console, "console.error: "+strings.Join(parts, " "))
			}
		}
	}))
	b.Ctx = ctx
	// The first call starts Chromium and binds it to the context it gets,
	// so it must not be a short-lived child context.
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		cancelC()
		cancelA()
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		cancelC()
		cancelA()
		t.Fatalf("chromium log domain: %v", err)
	}
	t.Cleanup(func() { cancelC(); cancelA() })
	return b
}

// Run runs actions with a timeout.
func (b *Browser) Run(t testing.TB, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v (console: %v)", err, b.Console())
	}
}

// Console returns what went wrong in the page so far: JavaScript errors
// and exceptions, and the browser's own error log (failed loads, 4xx and
// 5xx answers).
func (b *Browser) Console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// NonLoopbackRequests returns requested URLs whose host is not loopback.
func (b *Browser) NonLoopbackRequests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.requests {
		u, err := url.Parse(r)
		if err != nil {
			out = append(out, r)
			continue
		}
		if u.Scheme == "data" || u.Scheme == "blob" || u.Scheme == "about" {
			continue
		}
		h := u.Hostname()
		if h != "127.0.0.1" && h != "localhost" && h != "::1" {
			out = append(out, r)
		}
	}
	return out
}

// Screenshot saves a full-page PNG under $KIOSK_ARTIFACTS (default
// test-artifacts/ at the module root) and returns its path.
func (b *Browser) Screenshot(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 = PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(ArtifactDir(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ArtifactDir returns (creating it) $KIOSK_ARTIFACTS, by default
// test-artifacts/ at the module root, where tests leave what a person
// should look at.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KIOSK_ARTIFACTS")
	if dir == "" {
		root, _ := testmedia.ModuleRoot()
		dir = filepath.Join(root, "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
