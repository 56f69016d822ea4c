//go:build browser

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium package; no browser is ever downloaded.
const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium with a fresh profile, allowed to talk to 127.0.0.1 only.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v (apt-get install -y chromium)", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Any host name fails to resolve: the only address the page can reach is 127.0.0.1.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf), chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancel)
	// The page's errors and failed requests go to the test log.
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			t.Logf("browser: exception: %s", ev.ExceptionDetails.Text+" "+exceptionDesc(ev.ExceptionDetails))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				t.Logf("browser: console %s: %s", ev.Type, strings.Join(args, " "))
			}
		case *network.EventResponseReceived:
			if ev.Response.Status >= 400 {
				t.Logf("browser: %d %s", ev.Response.Status, ev.Response.URL)
			}
		case *network.EventLoadingFailed:
			if ev.Canceled { // a navigation cut a request short
				return
			}
			t.Logf("browser: request failed: %s", ev.ErrorText)
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// do runs browser steps, failing the test (after a dump) when they fail or take
// longer than 30s.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		dump(t, ctx, "failed")
		t.Fatalf("%s: %v", what, err)
	}
}

// insertText types text into the focused element as one insertion (like a paste), so
// an editor's bracket and quote auto-closing does not change it.
func insertText(text string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, input.InsertText, input.InsertTextParams{Text: text})
		return chromedp.Void{}, err
	}
}

// pageText is the visible text of the page.
func pageText(ctx context.Context) string {
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

// waitText polls the page until its text contains every one of want.
func waitText(ctx context.Context, limit time.Duration, want ...string) error {
	js, _ := json.Marshal(want)
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`document.body && %s.every(w => document.body.innerText.includes(w))`, js),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(limit)))
	return err
}

// dump writes the page's HTML and text to CLUSTERFLOW_WEBUI_DUMP (when set), which
// is how the selectors were found.
func dump(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("CLUSTERFLOW_WEBUI_DUMP")
	if dir == "" {
		return
	}
	html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	_ = os.WriteFile(filepath.Join(dir, name+".html"), []byte(html), 0o644)
	_ = os.WriteFile(filepath.Join(dir, name+".txt"), []byte(loc+"\n\n"+pageText(ctx)), 0o644)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		_ = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	}
	t.Logf("dumped %s (%s) to %s", name, loc, dir)
}

// TestWebUIStartPlaybook does what the README's "Starting a playbook from the Web UI"
// says, in headless Chromium: opens the embedded UI, chooses Start Workflow, fills in
// the ID, task queue, type and the JSON input naming a playbook file in the worker's
// playbook directory, and starts it. The run then shows up in the list filtered by
// its search attribute, and its page shows the search attributes every run sets.
// Screenshots of the list and the run page go to CLUSTERFLOW_SCREENSHOT_DIR (default:
// the test's temporary directory); CLUSTERFLOW_WEBUI_DUMP=DIR saves every page seen.
//
// Run with: go test -tags browser -count=1 -v ./internal/e2e/ -run WebUI
func TestWebUIStartPlaybook(t *testing.T) {
	began := time.Now()
	c, ui := newClusterWithUI(t, 2)
	c.playbook("webui-hello", "    - name: hello\n      kind: run\n      hosts: all\n      command: [uname, -a]\n")
	c.start("worker-ui", "worker", "--address", c.addr, "--playbook-dir", c.dir)
	t.Logf("web UI at %s", ui)

	ctx := browser(t)
	const id = "playbook/webui-hello"

	// The README's steps: open the UI, choose Start Workflow, fill in four fields.
	do(t, ctx, "open the start page",
		chromedp.Navigate(ui),
		// The list page's Start Workflow button is a link to the start page.
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/namespaces/default/workflows/start-workflow"]`)),
		chromedp.Click(chromedp.CSS(`a[href^="/namespaces/default/workflows/start-workflow"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#workflowId`)),
	)
	if loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`)); loc != "/namespaces/default/workflows/start-workflow" {
		t.Errorf("Start Workflow led to %s", loc)
	}
	dump(t, ctx, "start-empty")
	editor := chromedp.CSS(`[role="textbox"][aria-label="Data"]`)
	do(t, ctx, "fill the form",
		chromedp.SendKeys(chromedp.CSS(`#workflowId`), id),
		chromedp.SendKeys(chromedp.CSS(`#taskQueue`), "clusterflow"),
		chromedp.SendKeys(chromedp.CSS(`#workflowType`), "RunPlaybook"),
		chromedp.Click(editor),
		insertText(`{"playbook": "webui-hello.yaml"}`),
		// Leave the editor (it reformats the JSON then) before Start Workflow.
		chromedp.Focus(chromedp.CSS(`#workflowType`)),
	)
	enc, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`(document.querySelector('input[name="encoding"]:checked') || {value: ""}).value`))
	if err != nil || enc != "json/plain" {
		t.Errorf("input encoding is %q (%v), want json/plain by default", enc, err)
	}
	typed, _ := chromedp.Run(ctx, chromedp.Text(editor))
	var in map[string]any
	if err := json.Unmarshal([]byte(typed), &in); err != nil || len(in) != 1 || in["playbook"] != "webui-hello.yaml" {
		t.Errorf("input box holds %q (%v)", typed, err)
	}
	start := chromedp.CSS(`[data-testid="start-workflow-button"]`)
	do(t, ctx, "start the workflow",
		chromedp.Poll[chromedp.Void](`!document.querySelector('[data-testid="start-workflow-button"]').disabled`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	dump(t, ctx, "start-filled")
	do(t, ctx, "submit", chromedp.Click(start))
	// The UI confirms with a toast and stays on the start page.
	toast, err := chromedp.Run(ctx, chromedp.Poll[string](
		`[...document.querySelectorAll('[data-testid^="toast-live-region"]')].map(e => e.innerText).join(" ").trim()`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	dump(t, ctx, "after-submit")
	if err != nil || !strings.Contains(toast, "Workflow started successfully") {
		t.Fatalf("no confirmation after Start Workflow: toast %q (%v)\n%s", toast, err, pageText(ctx))
	}
	// The run completes (checked with the SDK, so the browser part only reads).
	if err := c.waitRun(id, 2*time.Minute); err != nil {
		t.Fatalf("run started from the web UI: %v\n%s", err, c.logOf(c.procs[len(c.procs)-1]))
	}
	desc, err := c.client.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	runID := desc.WorkflowExecutionInfo.Execution.RunId
	t.Logf("run %s/%s completed", id, runID)

	// The list, filtered by a search attribute, shows the run. Visibility lags the
	// run's close a little, so reload until it shows up.
	q := url.Values{"query": {`ClusterflowPlaybook="webui-hello"`}}
	listURL := ui + "/namespaces/default/workflows?" + q.Encode()
	deadline := time.Now().Add(60 * time.Second)
	for {
		do(t, ctx, "open the filtered list", chromedp.Navigate(listURL))
		_, err := chromedp.Run(ctx, chromedp.PollFunction[chromedp.Void](listedCompleted,
			chromedp.WithPollingArgs(id, runID), chromedp.WithPollingInterval(100*time.Millisecond),
			chromedp.WithPollingTimeout(5*time.Second)))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			dump(t, ctx, "list")
			t.Fatalf("run %s not listed at %s:\n%s", id, listURL, pageText(ctx))
		}
	}
	dump(t, ctx, "list")
	shots := os.Getenv("CLUSTERFLOW_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	screenshot(t, ctx, filepath.Join(shots, "webui-list.png"))

	// The run's page (the workflow ID's link in the list), Search Attributes tab.
	do(t, ctx, "open the run page",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`td[data-testid="workflows-summary-table-body-cell"] a[href*="/%s/%s/"]`, url.PathEscape(id), runID))),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="search-attributes-tab"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid="search-attributes-tab"]`)),
	)
	// The tab shows the attributes as JSON in a read-only editor.
	saJSON, err := chromedp.Run(ctx, chromedp.Poll[string](
		`(e => e && e.textContent.includes("ClusterflowOutcome") && e.textContent)(document.querySelector('[role="textbox"][aria-label="Search Attributes"]'))`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		dump(t, ctx, "run")
		t.Fatalf("run page shows no search attributes: %v\n%s", err, pageText(ctx))
	}
	var sa map[string]any
	if err := json.Unmarshal([]byte(saJSON), &sa); err != nil {
		t.Fatalf("search attributes on the run page: %v\n%s", err, saJSON)
	}
	for k, want := range map[string]any{
		"ClusterflowPlaybook": "webui-hello", "ClusterflowOutcome": "completed",
		"ClusterflowCluster": "loopback", "ClusterflowStepKinds": []any{"run"},
	} {
		if fmt.Sprint(sa[k]) != fmt.Sprint(want) {
			t.Errorf("run page: search attribute %s = %v, want %v", k, sa[k], want)
		}
	}
	dump(t, ctx, "run")
	screenshot(t, ctx, filepath.Join(shots, "webui-run.png"))
	t.Logf("took %s", time.Since(began).Round(time.Millisecond))
}

// listedCompleted finds the list's one row, which links to the run and says Completed.
const listedCompleted = `(id, runID) => {
	const rows = [...document.querySelectorAll("tr")].filter(r => r.querySelector('[data-testid="workflows-summary-table-body-cell"]'));
	if (rows.length !== 1) return false;
	const href = "/workflows/" + encodeURIComponent(id) + "/" + runID + "/";
	const links = [...rows[0].querySelectorAll("a")].filter(a => a.getAttribute("href").includes(href));
	const status = rows[0].querySelector('[data-testid="execution-status"]');
	return links.some(a => a.textContent.trim() === id) && status && status.textContent.trim() === "Completed";
}`

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func exceptionDesc(d *runtime.ExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}
