//go:build browser

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
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
	return ctx
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
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

func TestWebUIStartPlaybook(t *testing.T) {
	began := time.Now()
	c, ui := newClusterWithUI(t, 2)
	c.playbook("webui-hello", "    - name: hello\n      kind: run\n      hosts: all\n      command: [uname, -a]\n")
	c.start("worker-ui", "worker", "--address", c.addr, "--playbook-dir", c.dir)
	t.Logf("web UI at %s", ui)

	ctx := browser(t)
	const id = "playbook/webui-hello"

	// The README's steps: Start Workflow, then the four fields.
	do(t, ctx, "open the start page",
		chromedp.Navigate(ui+"/namespaces/default/workflows/start-workflow"),
		chromedp.WaitVisible(chromedp.CSS(`#workflowId`)),
	)
	dump(t, ctx, "start-empty")
	editor := chromedp.CSS(`[role="textbox"][aria-label="Data"]`)
	do(t, ctx, "fill the form",
		chromedp.SendKeys(chromedp.CSS(`#workflowId`), id),
		chromedp.SendKeys(chromedp.CSS(`#taskQueue`), "clusterflow"),
		chromedp.SendKeys(chromedp.CSS(`#workflowType`), "RunPlaybook"),
		chromedp.Click(editor),
		insertText(`{"playbook": "webui-hello.yaml"}`),
		// Leaving the editor reformats the JSON, which moves the page below it; do
		// that before clicking Start Workflow so the click lands on the button.
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
	// The UI leaves the start page for the new run's page once the server accepted it.
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`!location.pathname.endsWith("/start-workflow")`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		dump(t, ctx, "after-submit")
		t.Fatalf("the start page stayed after Start Workflow: %v\n%s", err, pageText(ctx))
	}

	// The run completes (checked with the SDK, so the browser part only reads).
	if err := c.waitRun(id, 2*time.Minute); err != nil {
		dump(t, ctx, "after-submit")
		t.Fatalf("run started from the web UI: %v\n%s", err, c.logOf(c.procs[len(c.procs)-1]))
	}
	dump(t, ctx, "after-submit")
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
		if err := waitText(ctx, 5*time.Second, id, "Completed"); err == nil {
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

	// The run's page shows the search attributes.
	runURL := fmt.Sprintf("%s/namespaces/default/workflows/%s/%s/history", ui, url.PathEscape(id), runID)
	do(t, ctx, "open the run page", chromedp.Navigate(runURL))
	if err := waitText(ctx, 30*time.Second, id, "Completed"); err != nil {
		dump(t, ctx, "run")
		t.Fatalf("run page %s: %v\n%s", runURL, err, pageText(ctx))
	}
	dump(t, ctx, "run")
	screenshot(t, ctx, filepath.Join(shots, "webui-run.png"))
	t.Logf("took %s", time.Since(began).Round(time.Millisecond))
}

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
