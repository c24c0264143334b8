package processor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// recorder is a Registerer that only collects metric names.
type recorder struct{ names []string }

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String()); m != nil {
			r.names = append(r.names, m[1])
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return true }

func TestMetricsReferenceAndDashboardMatchTheCode(t *testing.T) {
	rec := &recorder{}
	txn.NewMetrics(rec)
	cfg, err := LoadConfig(minimal)
	if err != nil {
		t.Fatal(err)
	}
	newRateControl(cfg, rec)
	newDedupeMetrics(rec)
	if len(rec.names) < 10 {
		t.Fatalf("found only %d metrics: %v", len(rec.names), rec.names)
	}
	doc := readRepoFile(t, "docs/metrics.md")
	for _, name := range rec.names {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("metric %s is not described in docs/metrics.md", name)
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
				if !strings.Contains(doc, "`"+name+"`") {
					t.Errorf("dashboard panel %q queries %s, which docs/metrics.md does not describe", p.Title, name)
				}
			}
		}
	}
	for _, name := range rec.names {
		if !charted[name] {
			t.Errorf("metric %s is on no dashboard panel", name)
		}
	}
}
