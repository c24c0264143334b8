package processor

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/txn"
)

type fakeLoop struct {
	last        time.Time
	initialized bool
}

func (f fakeLoop) LastIteration() time.Time { return f.last }
func (f fakeLoop) Initialized() bool        { return f.initialized }

type fakeMember bool

func (f fakeMember) Joined() bool { return bool(f) }

func TestProbes(t *testing.T) {
	const stale = time.Minute
	now := time.Now()
	tests := []struct {
		name     string
		loop     fakeLoop
		joined   bool
		path     string
		method   string
		wantCode int
		wantBody string
	}{
		{"healthy", fakeLoop{last: now, initialized: true}, true, "/healthz", http.MethodGet, 200, "ok"},
		{"healthy while not yet initialized", fakeLoop{last: now}, false, "/healthz", http.MethodGet, 200, "ok"},
		{"stuck", fakeLoop{last: now.Add(-2 * stale), initialized: true}, true, "/healthz", http.MethodGet, 503, "loop stuck: no progress for 2m"},
		{"head on a probe", fakeLoop{last: now}, false, "/healthz", http.MethodHead, 200, ""},
		{"post on a probe", fakeLoop{last: now}, false, "/healthz", http.MethodPost, 405, ""},
		{"not ready before fencing", fakeLoop{last: now}, true, "/readyz", http.MethodGet, 503, "producer not initialized"},
		{"not ready outside the group", fakeLoop{last: now, initialized: true}, false, "/readyz", http.MethodGet, 503, "not yet a member of the consumer group"},
		{"ready", fakeLoop{last: now, initialized: true}, true, "/readyz", http.MethodGet, 200, "ok"},
		{"metrics", fakeLoop{last: now}, false, "/metrics", http.MethodGet, 200, "eosproc_probe_test"},
		{"no profiler beside the probes", fakeLoop{last: now}, false, "/debug/pprof/", http.MethodGet, 404, ""},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "eosproc_probe_test", Help: "A series the test looks for."}))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			handler(reg, tt.loop, fakeMember(tt.joined), stale).ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("%s %s: status %d, want %d (body %q)", tt.method, tt.path, rec.Code, tt.wantCode, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("%s %s: body %q, want it to contain %q", tt.method, tt.path, rec.Body, tt.wantBody)
			}
		})
	}
}

// getFrom is what h answers to a GET of path: the status and the body.
func getFrom(h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// The probes answer while the clients are created (which can take a minute with de-duplication's topics):
// alive and not ready, then as the loop and the consumer say.
func TestProbesAnswerBeforeTheLoopExists(t *testing.T) {
	probes := &lateProbes{}
	h := handler(nil, probes, probes, time.Minute)
	get := func(path string) (int, string) { return getFrom(h, path) }
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("starting: /healthz %d, want 200", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("starting: /readyz %d %q, want 503", code, body)
	}
	probes.member.Store(fakeMember(true))
	probes.loop.Store(fakeLoop{last: time.Now().Add(-2 * time.Minute), initialized: true})
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("loop initialized, member joined: /readyz %d, want 200", code)
	}
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("loop stuck for 2m: /healthz %d, want 503 once the loop answers", code)
	}
}

func TestPprofIsServedOnItsOwnListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := servePprof(ln, slog.New(slog.DiscardHandler))
	defer stop()
	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("GET goroutine profile: status %d, body %.200q", resp.StatusCode, body)
	}
	resp, err = http.Post(base+"/debug/pprof/symbol", "text/plain", strings.NewReader("0x0"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /debug/pprof/symbol: status %d, want 405 (read-only)", resp.StatusCode)
	}
	stop()
	if _, err := http.Get(base + "/debug/pprof/"); err == nil {
		t.Error("the profiler still answers after stop")
	}
}

// A de-duplication restore reading records is progress for /healthz, though the loop's own beat stands still.
func TestHealthCountsRestoreProgress(t *testing.T) {
	const stale = time.Minute
	reg := prometheus.NewRegistry()
	restores := newDedupeMetrics(reg)
	loop := &txn.Loop{} // never run: its last beat is long ago
	h := handler(reg, restoringLoop{loop, restores}, fakeMember(true), stale)
	get := func(path string) (int, string) { return getFrom(h, path) }
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("before any progress: /healthz %d, want 503", code)
	}
	restores.RestoreProgress(stream.TopicPartition{Topic: "in"}, 1000)
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("during a restore: /healthz %d, want 200", code)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, "eosproc_dedupe_restored_records_total 1000") {
		t.Errorf("restored records are not counted during the restore:\n%s", metrics)
	}
}

// The default registry already holds the Go and process collectors: a Processor given it keeps them.
func TestProcessMetricsOnARegistryThatHasTheGoCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerProcessMetrics(reg, func() float64 { return 0 })
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	for _, want := range []string{"go_goroutines", "eosproc_build_info", "eosproc_offset_resets_total"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not registered: %v", want, names)
		}
	}
}

func TestAPortInUseStopsTheStartNamingItsVariable(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := freeAddr(t)
	tests := []struct {
		name, http, pprof, want string
	}{
		{"probes", busy.Addr().String(), "", "PROCESSOR_HTTP_ADDR"},
		{"profiler", free, busy.Addr().String(), "PROCESSOR_PPROF_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Processor{Config: Config{Brokers: "127.0.0.1:1", InputTopics: []string{"in"}, OutputTopic: "out",
				HTTPAddr: tt.http, PprofAddr: tt.pprof}, Logger: slog.New(slog.DiscardHandler)}
			err := p.Run(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), busy.Addr().String()) {
				t.Fatalf("Run = %v, want an error naming %s and %s", err, tt.want, busy.Addr())
			}
			// Nothing taken on the way stays taken.
			ln, err := net.Listen("tcp", free)
			if err != nil {
				t.Fatalf("the probes' port is still held after the failed start: %v", err)
			}
			ln.Close()
		})
	}
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
