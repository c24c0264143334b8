// Package rdkafka holds what the consume and produce packages both need around librdkafka and must not import
// from each other: merging protected and pass-through client properties, and turning the client's log lines and
// error events into structured logs.
package rdkafka

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Properties merges pass-through properties under the properties a package owns. Owned keys win and a clash is an
// error, not a silent override: the guarantees depend on them (isolation level, idempotence, transactional id),
// so a user who tries to change one must hear about it. The processor's config validation rejects these keys
// earlier with the variable's name; this check keeps the packages safe on their own. refused holds more keys the
// pass-through properties may not set (a package's whole list: aliases, keys it owns in some configurations),
// each with why.
func Properties(owned, refused, passThrough map[string]string) (map[string]string, error) {
	m := make(map[string]string, len(owned)+len(passThrough))
	for k, v := range passThrough {
		if _, ok := owned[k]; ok {
			return nil, fmt.Errorf("property %q is set by the processor and cannot be overridden", k)
		}
		if why, ok := refused[k]; ok {
			return nil, fmt.Errorf("property %q is set by the processor and cannot be overridden: %s", k, why)
		}
		m[k] = v
	}
	for k, v := range owned {
		m[k] = v
	}
	return m, nil
}

// SparseConnections is the property both clients set to false unless the user's properties set it: connect to
// every broker the cluster metadata names at once. With sparse connections (librdkafka's default) a client
// connects to a broker only when it needs it; but librdkafka 2.11 destroys the bootstrap broker's handle as soon
// as the first metadata names the real brokers, failing the FindCoordinator request in flight on it
// (_DESTROY_BROKER), and nothing connected to the named broker until the consumer's coordinator query and the
// producer's producer id request were retried, 500 ms later. Every start, and every restart after a failure,
// waited that long to join the group (a benchmark drain's start-up 0.8 s against 0.3 s). A processor reads and
// writes partitions led by most brokers anyway, so it holds nearly the same connections either way.
const SparseConnections = "enable.sparse.connections"

// OwnedMismatch compares what a client sets (set) with the list it publishes of the properties it owns (listed):
// keys it sets without listing them, and listed keys it does not set that are not among aliases. Both must be
// empty: the processor refuses exactly the listed keys in its configuration.
func OwnedMismatch(set, listed map[string]string, aliases ...string) (unlisted, unset []string) {
	for k := range set {
		if _, ok := listed[k]; !ok {
			unlisted = append(unlisted, k)
		}
	}
	for k := range listed {
		if _, ok := set[k]; !ok && !slices.Contains(aliases, k) {
			unset = append(unset, k)
		}
	}
	slices.Sort(unlisted)
	slices.Sort(unset)
	return unlisted, unset
}

// Log writes one of librdkafka's log lines to log as a structured record.
func Log(log *slog.Logger, e kafka.LogEvent) {
	log.Log(context.Background(), level(e.Level), e.Message, "client", e.Name, "facility", e.Tag)
}

// StatsInterval is how often a client whose statistics are wanted reports them (statistics.interval.ms), unless
// its properties say otherwise: often enough for a scrape every 15 s to see changes, rarely enough that building
// and parsing the document (a few KB per broker and partition) costs nothing measurable.
const StatsInterval = 5 * time.Second

// ForwardLogs makes cfg's client send librdkafka's log lines to its Logs channel instead of stderr, where they
// would break the JSON log; Forward then writes them to log.
func ForwardLogs(cfg kafka.ConfigMap) { cfg["go.logs.channel.enable"] = true }

// Forward writes the log lines of a client made with ForwardLogs to log until the client is closed (which closes
// its channel).
func Forward(log *slog.Logger, logs <-chan kafka.LogEvent) {
	go func() {
		for e := range logs {
			Log(log, e)
		}
	}()
}

// level maps syslog severities, which librdkafka uses, onto slog levels.
func level(syslog int) slog.Level {
	switch {
	case syslog <= 3:
		return slog.LevelError
	case syslog == 4:
		return slog.LevelWarn
	case syslog <= 6:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// ErrorLog logs librdkafka's non-fatal error events, at most once per code every Every (default 30 s): while a
// broker is down, librdkafka repeats "all brokers are down" several times a second, and a log that says it once
// with a count says as much.
type ErrorLog struct {
	Log   *slog.Logger
	Every time.Duration

	mu   sync.Mutex
	last map[kafka.ErrorCode]time.Time
	hush map[kafka.ErrorCode]int
}

// Warn logs e unless the same code was logged less than Every ago; then it only counts it.
func (l *ErrorLog) Warn(msg string, e kafka.Error) {
	every := l.Every
	if every == 0 {
		every = 30 * time.Second
	}
	l.mu.Lock()
	if l.last == nil {
		l.last, l.hush = map[kafka.ErrorCode]time.Time{}, map[kafka.ErrorCode]int{}
	}
	now := time.Now()
	code := e.Code()
	if now.Sub(l.last[code]) < every {
		l.hush[code]++
		l.mu.Unlock()
		return
	}
	suppressed := l.hush[code]
	l.last[code], l.hush[code] = now, 0
	l.mu.Unlock()
	l.Log.Warn(msg, "error", e.Error(), "code", code.String(), "suppressed_since_last", suppressed)
}
