package processor

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
)

// Build describes the running binary: what `processor --version` prints and eosproc_build_info's labels.
type Build struct {
	Version    string // the module version, "(devel)" for a build from a work tree
	Commit     string // the VCS revision the binary was built from, with "-dirty" for uncommitted changes
	Go         string
	Librdkafka string
}

// BuildOf reads the running binary's build information.
func BuildOf() Build {
	b := Build{Version: "(unknown)", Commit: "unknown", Go: runtime.Version()}
	_, b.Librdkafka = kafka.LibraryVersion()
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Version = info.Main.Version
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		b.Commit += "-dirty"
	}
	return b
}

func (b Build) String() string {
	return fmt.Sprintf("eosproc processor %s (commit %s, %s, librdkafka %s)", b.Version, b.Commit, b.Go, b.Librdkafka)
}

// registerBuildInfo exports the build as eosproc_build_info, a constant 1 with the build in its labels, so that a
// dashboard can show which version each replica runs.
func registerBuildInfo(reg prometheus.Registerer, b Build) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eosproc_build_info",
		Help: "The running binary: always 1, with its version, commit, Go and librdkafka versions as labels.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "go_version": b.Go,
			"librdkafka_version": b.Librdkafka},
	})
	g.Set(1)
	reg.MustRegister(g)
}
