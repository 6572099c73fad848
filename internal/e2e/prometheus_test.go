package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestPrometheusDashboardQueriesReturnSeries starts Debian's prometheus
// scraping a real cluster (a JobManager and two TaskManagers) that runs a
// checkpointed heap job and a checkpointed Pebble job (each with a keyed
// count, a dedupe whose state has a TTL and a window firing timers),
// checks that their state metrics move, then runs every panel query of
// every Grafana dashboard under deploy/grafana/dashboards: a query that
// returns no series is a panel that shows "No data" to a user. It also
// loads the alerting rules and requires each to evaluate without error.
func TestPrometheusDashboardQueriesReturnSeries(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		// Never skipped: a skipped test proves nothing. make test installs it.
		t.Fatal("prometheus is not installed: run make tools (Debian package prometheus)")
	}
	dir := t.TempDir()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--heartbeat-timeout", "2s", "--log-format", "text")
	jmAddr, jmHTTP := jm.addresses()
	var tmHTTP []string
	for i := 0; i < 2; i++ {
		tm := start(t, fmt.Sprintf("taskmanager %d", i), "--jobmanager", jmAddr, "--slots", "2",
			"--id", fmt.Sprintf("tm-%d", i), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("tm%d", i)))
		_, h := tm.addresses()
		tmHTTP = append(tmHTTP, h)
	}
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "two active TaskManagers", func() bool {
		tm := taskManagers(t, c)
		return tm["tm-0"] == active && tm["tm-1"] == active
	})
	for _, backend := range []string{"heap", "pebble"} {
		spec := filepath.Join(dir, backend+".yaml")
		writeFile(t, spec, fmt.Sprintf(`name: dash-%s
parallelism: 2
operators:
  - id: src
    type: datagen
    uid: src-v1
    watermarks: {timestamp: ts, outOfOrderness: 1s}
    config: {keys: 100, rate: 2000}
  - id: count
    type: count
    uid: count-v1
    inputs: [src]
    keyBy: key
  - id: sink
    type: blackhole
    inputs: [count]
  - id: unique
    type: dedupe
    uid: unique-v1
    inputs: [src]
    keyBy: key
    config: {ttl: 200ms}
  - id: perSecond
    type: window
    uid: per-second-v1
    inputs: [unique]
    keyBy: key
    config: {size: 1s}
  - id: windows
    type: blackhole
    inputs: [perSecond]
stateBackend: {type: %s}
checkpoints:
  interval: 500ms
  storage: %q
`, backend, backend, "file://"+filepath.Join(dir, "checkpoints")))
		if out, err := flowctl(t, jmAddr, "run", "-d", spec); err != nil {
			t.Fatalf("flowctl run %s: %v\n%s", backend, err, out)
		}
	}

	// Prometheus, scraping every daemon each second, with the alerting rules.
	rules, err := filepath.Abs("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	quoted := func(addrs ...string) string {
		var q []string
		for _, a := range addrs {
			q = append(q, fmt.Sprintf("%q", a))
		}
		return strings.Join(q, ", ")
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfg, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: flow-jobmanager
    static_configs: [{targets: [%s]}]
  - job_name: flow-taskmanager
    static_configs: [{targets: [%s]}]
`, rules, quoted(jmHTTP), quoted(tmHTTP...)))
	promAddr := freeAddr(t)
	prom := exec.Command(promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	promLog, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
		promLog.Close()
		if t.Failed() {
			b, _ := os.ReadFile(promLog.Name())
			t.Logf("---- prometheus log ----\n%s", b)
		}
	})
	api := "http://" + promAddr + "/api/v1/"
	waitFor(t, 30*time.Second, "prometheus to scrape all three daemons", func() bool {
		r, err := promQuery(api, `sum(up)`)
		return err == nil && len(r) == 1 && r[0].Value[1] == "3"
	})

	// Every daemon reports its build.
	if r, err := promQuery(api, `count(flow_build_info == 1)`); err != nil || len(r) != 1 || r[0].Value[1] != "3" {
		t.Errorf("count(flow_build_info == 1) = %v (err %v), want 3: one per daemon", r, err)
	}

	// Both jobs complete checkpoints, seen through the JobManager's metrics.
	for _, name := range []string{"dash-heap", "dash-pebble"} {
		q := fmt.Sprintf(`flow_checkpoints_total{result="completed",flow_job_name=%q} > 0 and on (flow_job) flow_job_status{status="RUNNING"} == 1`, name)
		waitFor(t, 30*time.Second, name+" completing checkpoints in Prometheus", func() bool {
			r, err := promQuery(api, q)
			return err == nil && len(r) == 1
		})
	}

	// State metrics move in both jobs: dedupe's TTL state expires, the
	// window's timers fire, keys are counted.
	for _, name := range []string{"dash-heap", "dash-pebble"} {
		for _, q := range []string{
			`sum(rate(flow_state_ttl_removed_total{flow_job_name=%q,operator="unique"}[5s])) > 0`,
			`sum(rate(flow_state_timers_fired_total{flow_job_name=%q,operator="perSecond"}[5s])) > 0`,
			`sum(flow_state_keys{flow_job_name=%q,operator="count"}) > 0`,
			`sum(flow_state_access_latency_seconds_count{flow_job_name=%q}) > 0`,
		} {
			q = fmt.Sprintf(q, name)
			waitFor(t, 30*time.Second, q, func() bool {
				r, err := promQuery(api, q)
				return err == nil && len(r) == 1
			})
		}
	}
	if r, err := promQuery(api, `sum(flow_state_pebble_memtable_bytes{flow_job_name="dash-pebble"}) > 0`); err != nil || len(r) != 1 {
		t.Errorf("pebble memtable bytes: %v (err %v), want a positive sum", r, err)
	}
	if r, err := promQuery(api, `count(flow_state_pebble_memtable_bytes{flow_job_name="dash-heap"})`); err != nil || len(r) != 0 {
		t.Errorf("pebble metrics of the heap job: %v (err %v), want none", r, err)
	}

	// Every panel query, with the dashboard variables set to match all.
	exprs := dashboardQueries(t, "../../deploy/grafana/dashboards")
	if len(exprs) == 0 {
		t.Fatal("no panel queries found in deploy/grafana/dashboards")
	}
	replacer := strings.NewReplacer("$__rate_interval", "15s", "$__range", "5m", "$__interval", "5s",
		"$flow_job", ".+", "$instance", ".+")
	pending := map[string]string{} // query -> panel
	for q, panel := range exprs {
		pending[replacer.Replace(q)] = panel
	}
	lastErr := map[string]string{}
	deadline := time.Now().Add(90 * time.Second)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for q := range pending {
			r, err := promQuery(api, q)
			switch {
			case err != nil:
				lastErr[q] = err.Error()
			case len(r) == 0:
				lastErr[q] = "no series"
			default:
				delete(pending, q)
			}
		}
		if len(pending) > 0 {
			time.Sleep(time.Second) // the next scrapes
		}
	}
	var empty []string
	for q, panel := range pending {
		empty = append(empty, fmt.Sprintf("panel %q: %s: %s", panel, q, lastErr[q]))
	}
	sort.Strings(empty)
	if len(empty) > 0 {
		t.Errorf("%d of %d dashboard queries returned nothing against a running cluster:\n%s", len(empty), len(exprs), strings.Join(empty, "\n"))
	}

	// Every alerting rule loaded and evaluates without error.
	var rulesResp struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	waitFor(t, 20*time.Second, "the alerting rules to be evaluated", func() bool {
		if err := promGet(api+"rules", &rulesResp); err != nil {
			return false
		}
		n := 0
		for _, g := range rulesResp.Data.Groups {
			for _, r := range g.Rules {
				if r.Health != "ok" {
					return r.Health == "err" // fail below, with the error
				}
				n++
			}
		}
		return n > 0
	})
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			if r.Health != "ok" {
				t.Errorf("alerting rule %s: health %s: %s", r.Name, r.Health, r.LastError)
			}
		}
	}
}

// dashboardQueries returns every panel target expression of the dashboards
// in dir, with the title of the panel it belongs to.
func dashboardQueries(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string  `json:"title"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	out := map[string]string{}
	var walk func(string, []panel)
	walk = func(file string, ps []panel) {
		for _, p := range ps {
			walk(file, p.Panels)
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					out[tg.Expr] = filepath.Base(file) + ": " + p.Title
				}
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk(f, d.Panels)
	}
	return out
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func promQuery(api, q string) ([]promSample, error) {
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := promGet(api+"query?query="+url.QueryEscape(q), &resp); err != nil {
		return nil, err
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query failed: %s", resp.Error)
	}
	if resp.Data.ResultType == "scalar" {
		return []promSample{{}}, nil
	}
	return resp.Data.Result, nil
}

func promGet(u string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// freeAddr returns a loopback address with a port free right now (for a
// program that cannot report the port it picked).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
