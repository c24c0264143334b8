package processor

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eosproc/eosproc/internal/pipeline"
	"github.com/eosproc/eosproc/txn"
)

// The operations files outside Go (deployment examples, docs, dashboard) name variables and metrics; these tests
// fail when one of them names something the code no longer has, or misses something it has.

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDeployExamplesAndDocsNameOnlyKnownVariables(t *testing.T) {
	known := map[string]bool{}
	for _, f := range fields() {
		known[EnvPrefix+f.key] = true
	}
	files, _ := filepath.Glob(filepath.Join("..", "deploy", "k8s", "*.yaml"))
	for i := range files {
		files[i], _ = filepath.Rel("..", files[i])
	}
	files = append(files, "deploy/processor.env.example", "docs/runbook.md", "docs/metrics.md")
	variable := regexp.MustCompile(`PROCESSOR_[A-Z0-9_]*[A-Z0-9]`)
	for _, rel := range files {
		for _, v := range variable.FindAllString(readRepoFile(t, rel), -1) {
			if !known[v] {
				t.Errorf("%s names %s, which is no configuration variable", rel, v)
			}
		}
	}
}

func TestStatefulSetOutlivesTheShutdownBound(t *testing.T) {
	sts := readRepoFile(t, "deploy/k8s/statefulset.yaml")
	m := regexp.MustCompile(`terminationGracePeriodSeconds: (\d+)`).FindStringSubmatch(sts)
	if m == nil {
		t.Fatal("statefulset.yaml sets no terminationGracePeriodSeconds")
	}
	grace, _ := strconv.Atoi(m[1])
	cmEnv := configMapEnv(sts)
	if len(cmEnv) < 5 {
		t.Fatalf("statefulset.yaml's ConfigMap has %d PROCESSOR_ entries, want the example configuration", len(cmEnv))
	}
	cfg, err := LoadConfig(append(minimal, cmEnv...))
	if err != nil {
		t.Fatalf("the StatefulSet's ConfigMap is not a valid configuration: %v", err)
	}
	if bound := cfg.ShutdownBound(); time.Duration(grace)*time.Second <= bound {
		t.Errorf("terminationGracePeriodSeconds %d is not above the shutdown bound %s", grace, bound)
	}
	for _, want := range []string{"fieldPath: metadata.name", "readinessProbe", "livenessProbe", "path: /readyz", "path: /healthz", "resources:", "prometheus.io/scrape"} {
		if !strings.Contains(sts, want) {
			t.Errorf("statefulset.yaml lacks %q", want)
		}
	}
}

// configMapEnv returns the PROCESSOR_ entries of the ConfigMap in a manifest, except those naming files that only
// exist in the pod.
func configMapEnv(manifest string) []string {
	var env []string
	for _, m := range regexp.MustCompile(`(?m)^  (PROCESSOR_[A-Z_]+): (.+)$`).FindAllStringSubmatch(manifest, -1) {
		env = append(env, m[1]+"="+strings.Trim(m[2], `"`))
	}
	return slices.DeleteFunc(env, func(kv string) bool { return strings.Contains(kv, "_FILE=") })
}

// discoveredAtRunTime are the metrics whose series are per broker or per partition: none exists before the
// client has met the brokers or been assigned partitions. Every other metric has its series from start-up.
var discoveredAtRunTime = map[string]bool{
	"eosproc_kafka_request_rtt_seconds":                  true,
	"eosproc_consumer_lag_records":                       true,
	"eosproc_backpressure_rate_limit_records_per_second": true,
	"eosproc_dedupe_duplicates_dropped_total":            true,
	"eosproc_dedupe_entries":                             true,
}

// TestMetricsReferenceAndDashboardMatchTheCode registers every metric as Run does, gathers what a scrape right
// after start-up returns, and checks docs/metrics.md and the dashboard against both.
func TestMetricsReferenceAndDashboardMatchTheCode(t *testing.T) {
	reg := &recordingRegistry{Registry: prometheus.NewPedanticRegistry()}
	cfg, err := LoadConfig(minimal)
	if err != nil {
		t.Fatal(err)
	}
	txn.NewMetrics(reg).InitDeadLetterStages(pipeline.Stages...)
	newRateControl(cfg, reg)
	newDedupeMetrics(reg)
	newClientMetrics(reg, slog.Default())
	registerProcessMetrics(reg, func() float64 { return 0 })

	var registered []string
	ch := make(chan *prometheus.Desc, 256)
	go func() {
		for _, c := range reg.collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	for d := range ch {
		if m := regexp.MustCompile(`fqName: "(eosproc_[^"]+)"`).FindStringSubmatch(d.String()); m != nil {
			registered = append(registered, m[1])
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	atStart := map[string]bool{}
	for _, f := range families {
		atStart[f.GetName()] = true
	}
	if len(registered) < 20 {
		t.Fatalf("found only %d metrics: %v", len(registered), registered)
	}
	doc := readRepoFile(t, "docs/metrics.md")
	for _, name := range registered {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("metric %s is not described in docs/metrics.md", name)
		}
		if !atStart[name] && !discoveredAtRunTime[name] {
			t.Errorf("metric %s has no series at start-up: a dashboard or alert on it has nothing until it first moves", name)
		}
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readRepoFile(t, "deploy/grafana-dashboard.json")), &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	charted := map[string]bool{}
	metric := regexp.MustCompile(`eosproc_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, name := range metric.FindAllString(target.Expr, -1) {
				name = strings.TrimSuffix(name, "_bucket")
				charted[name] = true
				if !slices.Contains(registered, name) {
					t.Errorf("dashboard panel %q queries %s, which the processor does not export", p.Title, name)
				}
			}
		}
	}
	for _, name := range registered {
		if !charted[name] {
			t.Errorf("metric %s is on no dashboard panel", name)
		}
	}
}

// recordingRegistry registers as a registry does and remembers the collectors, to describe them.
type recordingRegistry struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegistry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recordingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}
