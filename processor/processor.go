// Package processor is the library front door of the exactly-once processor: a Processor turns a Config into a
// consumer, a producer and the transactional loop, serves /metrics, /healthz and /readyz, and returns when the
// loop stops. Main is a whole binary's main (PROCESSOR_* variables, signals, exit codes): cmd/processor is
// Main(nil), and a program with its own Transform is Main(transform).
package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eosproc/eosproc/consume"
	"github.com/eosproc/eosproc/internal/librdkafka"
	"github.com/eosproc/eosproc/internal/pipeline"
	"github.com/eosproc/eosproc/produce"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/txn"
)

// Processor runs the exactly-once loop, shaped like net/http.Server: set the fields, then call Run. Only
// Config's three required fields (Brokers, InputTopics, OutputTopic) need setting; every other zero field means
// the default, so such a Processor behaves exactly as the binary does with only those three variables set.
type Processor struct {
	// Config is the configuration; LoadConfig reads it from PROCESSOR_* variables, or build it in Go.
	Config Config
	// Transform turns each input record into its outputs. nil means the stages Config sets (Filter, Map, Key,
	// HeadersSet, HeadersDrop, Route) or, with none, stream.Identity; with a Transform, leave the stages unset.
	Transform stream.Transform
	// Logger receives the processor's logs. nil means JSON on stderr at Config.LogLevel, as the binary logs.
	Logger *slog.Logger
	// Metrics is where the processor registers its metrics. nil means a registry of its own. /metrics serves
	// Metrics when it is also a prometheus.Gatherer (as a *prometheus.Registry is); otherwise the caller
	// exposes it. One Processor per registry: a second one's eosproc_ metrics would clash.
	Metrics prometheus.Registerer
	// NoHTTP leaves out the listener on Config.HTTPAddr (/metrics, /healthz and /readyz).
	NoHTTP bool
}

// Run runs the processor until ctx is cancelled, which is a clean stop (nil), or a fatal error. Invalid
// configuration is a *ConfigError, returned before anything connects.
func (p *Processor) Run(ctx context.Context) error {
	cfg := p.Config
	if err := cfg.resolve(); err != nil {
		return err
	}
	log := p.Logger
	if log == nil {
		level, _ := parseLevel(cfg.LogLevel) // validated by resolve
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	transform, err := cfg.transform(p.Transform)
	if err != nil {
		return err
	}
	reg, gather := p.registry()

	ln, closeListeners, err := p.listen(cfg, log)
	if err != nil {
		return err
	}
	defer closeListeners()

	// Logged first: creating the clients can take a while (or fail), and the configuration says why.
	ids := []any{"transactional_id", cfg.transactionalID()}
	if cfg.alternating() {
		ids = append(ids, "alternate_transactional_id", cfg.alternateTransactionalID())
	}
	log.Info("processor starting", append(ids, "go_memory_limit", goMemoryLimit(), "config", cfg.LogValue())...)

	// The probes answer from the start: creating the clients and the de-duplication topics can take a minute.
	probes := &lateProbes{}
	// Registered before /metrics is served, so that every scrape has the build and the process.
	registerProcessMetrics(reg, probes.offsetResets)
	if ln != nil {
		// Commit can block for a transaction timeout and InitTransactions for two; only beyond that is the loop
		// stuck.
		stale := 2*cfg.TransactionTimeout + 2*cfg.BatchInterval
		defer serveHTTP(ln, handler(gather, probes, probes, stale), log)()
	}

	// The run ends early, with the cause as its error, when a client fails for good or a login keeps failing.
	runCtx, failRun := context.WithCancelCause(ctx)
	defer failRun(nil)
	watch := &authWatch{}
	c, err := newClients(runCtx, cfg, log, watch, newClientMetrics(reg, log), failRun)
	if refused := (*librdkafka.ConfigRefused)(nil); errors.As(err, &refused) {
		return &ConfigError{Problems: []string{fmt.Sprintf("PROCESSOR_KAFKA_PROPERTIES, PROCESSOR_%s_PROPERTIES: librdkafka refused the %s's configuration: %s",
			strings.ToUpper(refused.Client), refused.Client, refused.Reason)}}
	}
	if err != nil {
		return err
	}
	defer c.close(log)
	probes.member.Store(c.consumer)

	dedupeStage, restores, err := newDedupe(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	loop := newLoop(cfg, c, transform, dedupeStage, reg, log)
	probes.loop.Store(restoringLoop{loop, restores})

	// A refused login or TLS handshake ends the run with an error saying what to check, after a bounded time,
	// instead of being retried forever; see authWatch.
	connected := func() bool {
		if !loop.AtLeastOnce {
			return loop.Initialized()
		}
		return len(c.consumer.Assigned()) > 0
	}
	go watch.run(runCtx, cfg.AuthFailureTimeout, time.Second, connected, failRun)
	err = loop.Run(runCtx)
	if err == nil && ctx.Err() == nil && runCtx.Err() != nil {
		err = context.Cause(runCtx)
	}
	if err != nil {
		return explain(err, cfg)
	}
	log.Info("processor stopped")
	return nil
}

// listen takes the ports first: a port in use is a plain start-up error, better found before joining the group.
// It serves the profiler at once if asked to; ln, nil without HTTP, is served once the probes exist. done stops
// the profiler and closes ln (the HTTP server's shutdown closes it too, once it serves).
func (p *Processor) listen(cfg Config, log *slog.Logger) (ln net.Listener, done func(), err error) {
	if !p.NoHTTP {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, nil, fmt.Errorf("listen on PROCESSOR_HTTP_ADDR %q: %w", cfg.HTTPAddr, err)
		}
	}
	closeHTTP := func() {
		if ln != nil {
			ln.Close()
		}
	}
	if cfg.PprofAddr == "" {
		return ln, closeHTTP, nil
	}
	pln, err := net.Listen("tcp", cfg.PprofAddr)
	if err != nil {
		closeHTTP()
		return nil, nil, fmt.Errorf("listen on PROCESSOR_PPROF_ADDR %q: %w", cfg.PprofAddr, err)
	}
	log.Info("serving Go's profiler at /debug/pprof/", "addr", pln.Addr().String())
	stopPprof := servePprof(pln, log)
	return ln, func() { stopPprof(); closeHTTP() }, nil
}

// registry is where the metrics go and what /metrics serves (nil: nothing to serve).
func (p *Processor) registry() (prometheus.Registerer, prometheus.Gatherer) {
	if p.Metrics == nil {
		reg := prometheus.NewRegistry()
		return reg, reg
	}
	gather, _ := p.Metrics.(prometheus.Gatherer)
	return p.Metrics, gather
}

// transform is the transform the loop runs: the caller's, or the configured stages, or stream.Identity, with
// the PROCESSOR_TEST_ knobs around it; nil for the identity without knobs, which the loop writes with fewer
// allocations than when it is passed.
func (c Config) transform(own stream.Transform) (stream.Transform, error) {
	staged, err := c.stagesTransform()
	if err != nil {
		return nil, err
	}
	t := own
	switch {
	case own != nil && staged != nil:
		// Running one and silently ignoring the other would surprise whoever set them; composing them would
		// hide an order the caller should choose in Go.
		return nil, &ConfigError{Problems: []string{"transform stages (PROCESSOR_FILTER, _MAP, _KEY, _HEADERS_SET, _HEADERS_DROP, _ROUTE) are set, but the Processor has its own Transform: use one or the other"}}
	case staged != nil:
		t = staged
	case own == nil:
		if c.TestFailHeader == "" && c.TestCostPerRecord == 0 {
			return nil, nil
		}
		t = stream.Identity
	}
	return withTestKnobs(t, c.TestFailHeader, c.TestCostPerRecord), nil
}

func (c Config) transactionalID() string { return c.AppID + "-" + c.InstanceID }

// alternateTransactionalID is the transactional.id of the producer that takes every other transaction.
func (c Config) alternateTransactionalID() string { return c.transactionalID() + "~1" }

// alternating says whether transactions alternate between two producers (txn.Loop.Alternate, which the loop
// leaves unused in the same cases).
func (c Config) alternating() bool {
	return c.ProcessingGuarantee == "exactly_once" && c.TransactionalProducers > 1 && c.DedupeIdentity == "" && !c.TestSerialLoop
}

// transactionalIDs names the producers' transactional ids, for logs and errors.
func (c Config) transactionalIDs() string {
	if c.alternating() {
		return fmt.Sprintf("%q and %q", c.transactionalID(), c.alternateTransactionalID())
	}
	return strconv.Quote(c.transactionalID())
}

// clients are the loop's producer and consumer, and what the processor learnt of its output topics.
type clients struct {
	producer *produce.Producer
	// alternate takes every other transaction (txn.Loop.Alternate); nil with one producer (at_least_once,
	// de-duplication, PROCESSOR_TRANSACTIONAL_PRODUCERS=1).
	alternate *produce.Producer
	consumer  *consume.Consumer
	limits    map[string]int // output topics' max.message.bytes
}

// newClients creates the producers and the consumer; a client that fails for good, or a consumer fenced, ends
// the run through failRun.
func newClients(ctx context.Context, cfg Config, log *slog.Logger, watch *authWatch, stats *clientMetrics, failRun context.CancelCauseFunc) (*clients, error) {
	msgTimeout, _, _ := cfg.messageTimeout() // validated by resolve
	limits := outputLimits(ctx, cfg, log)
	pcfg := produce.Config{
		Brokers:            cfg.Brokers,
		TransactionTimeout: cfg.TransactionTimeout,
		MessageTimeout:     msgTimeout,
		GroupID:            cfg.GroupID,
		Properties:         batchesWithin(limits, clientProperties(cfg.securityProperties(), cfg.KafkaProperties, cfg.ProducerProperties), log),
		Logger:             log,
		OnError:            watch.observe,
		OnStats:            stats.observe,
	}
	if cfg.ProcessingGuarantee == "exactly_once" {
		pcfg.TransactionalID = cfg.transactionalID()
	}
	producer, err := produce.New(pcfg)
	if err != nil {
		return nil, err
	}
	var alternate *produce.Producer
	if cfg.alternating() {
		pcfg.TransactionalID = cfg.alternateTransactionalID()
		if alternate, err = produce.New(pcfg); err != nil {
			producer.Close()
			return nil, err
		}
	}
	consumer, err := consume.New(consume.Config{
		Brokers:         cfg.Brokers,
		GroupID:         cfg.GroupID,
		InstanceID:      groupInstanceID(cfg),
		Topics:          cfg.InputTopics,
		AutoOffsetReset: cfg.AutoOffsetReset,
		// A batch may take an interval to assemble and a transaction timeout to commit; the member must not be
		// thrown out of the group meanwhile, or its offsets are refused and the batch is redone.
		MaxPollInterval: max(5*time.Minute, 2*cfg.TransactionTimeout+cfg.BatchInterval),
		BatchInterval:   cfg.BatchInterval,
		BatchRecords:    cfg.BatchRecords,
		MaxBatchRecords: cfg.MaxBatchRecords,
		Properties:      clientProperties(cfg.securityProperties(), cfg.KafkaProperties, cfg.ConsumerProperties),
		Logger:          log,
		OnError:         watch.observe,
		OnStats:         stats.observe,
		OnFatal: func(err error) {
			failRun(fmt.Errorf("consumer failed for good (usually a fenced static member: another live instance with "+
				"PROCESSOR_INSTANCE_ID %q, or librdkafka fencing its own rejoin after a coordinator change): %w", cfg.InstanceID, err))
		},
	})
	if err != nil {
		producer.Close()
		if alternate != nil {
			alternate.Close()
		}
		return nil, err
	}
	return &clients{producer: producer, alternate: alternate, consumer: consumer, limits: limits}, nil
}

// close stops consuming, then closes the producers.
func (c *clients) close(log *slog.Logger) {
	if err := c.consumer.Close(); err != nil {
		log.Warn("close consumer", "error", err)
	}
	c.producer.Close()
	if c.alternate != nil {
		c.alternate.Close()
	}
}

// registerProcessMetrics registers the Go runtime's, the process's and the build's metrics, and the count of
// input offsets reset by retention. A caller's registry may hold the Go and process collectors already (the
// default registry does): those are kept.
func registerProcessMetrics(reg prometheus.Registerer, offsetResets func() float64) {
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				panic(err) // a collector that cannot be registered is a bug, as MustRegister has it
			}
		}
	}
	registerBuildInfo(reg, BuildOf())
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "eosproc_offset_resets_total",
		Help: "Input offsets found deleted by retention and reset per auto.offset.reset: records lost upstream.",
	}, offsetResets))
}

// newLoop wires the transactional loop.
func newLoop(cfg Config, c *clients, transform stream.Transform, dedupeStage txn.Deduplicator, reg prometheus.Registerer, log *slog.Logger) *txn.Loop {
	metrics := txn.NewMetrics(reg)
	if cfg.hasStages() {
		metrics.InitDeadLetterStages(pipeline.Stages...)
	}
	loop := &txn.Loop{
		Consumer:        c.consumer,
		Producer:        c.producer,
		Transform:       transform,
		OutputTopic:     cfg.OutputTopic,
		DeadLetterTopic: cfg.DeadLetterTopic,
		Budgeter:        newRateControl(cfg, reg),
		Dedupe:          dedupeStage,
		MaxRecordBytes:  c.producer.MaxRecordBytes(),
		TopicMaxBytes:   c.limits,
		Serial:          cfg.TestSerialLoop,
		Faults: txn.Faults{
			AbortRatio:    cfg.TestAbortRatio,
			InTransaction: stopInTransaction(cfg.TestStopInTransaction, log),
		},
		AtLeastOnce:        cfg.ProcessingGuarantee != "exactly_once",
		StopOnBadRecord:    cfg.ErrorsTolerance == "none",
		AppID:              cfg.AppID,
		InstanceID:         cfg.InstanceID,
		ShutdownTimeout:    cfg.ShutdownTimeout,
		TransactionTimeout: cfg.TransactionTimeout,
		Metrics:            metrics,
		Logger:             log,
	}
	if c.alternate != nil {
		loop.Alternate = c.alternate
	}
	return loop
}

// serveHTTP serves h on ln until the returned function is called.
func serveHTTP(ln net.Listener, h http.Handler, log *slog.Logger) (shutdown func()) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "error", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
}

// stopInTransaction returns the hook behind PROCESSOR_TEST_STOP_IN_TRANSACTION: the process stops itself in
// transaction n, as a frozen host or VM would, and goes on when the test sends SIGCONT.
func stopInTransaction(n int, log *slog.Logger) func(int) {
	if n == 0 {
		return nil
	}
	return func(k int) {
		if k != n {
			return
		}
		log.Warn("stopping with SIGSTOP inside a transaction (PROCESSOR_TEST_STOP_IN_TRANSACTION)", "transaction", k)
		if err := stopThisThread(); err != nil {
			log.Error("stop inside a transaction", "error", err)
		}
	}
}

// stopThisThread stops the process with a SIGSTOP sent to the calling thread, so that the stop takes effect
// before the call returns. A SIGSTOP sent to the process (kill) is delivered to whichever thread the kernel picks,
// often the idle main thread, and the caller runs on until that thread is scheduled and stops the others: on a
// busy machine long enough to send the very offsets the stop is meant to hold back (an at_least_once run lost
// its duplicates that way; a small program stopping itself 300 times went on past the kill 191 times, past a
// tgkill none).
func stopThisThread() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGSTOP)
}

// groupInstanceID is the consumer's group.instance.id: the instance id for static membership, none otherwise.
func groupInstanceID(cfg Config) string {
	if !cfg.StaticMembership {
		return ""
	}
	return cfg.InstanceID
}

// explain adds what the operator should know to the errors whose cause is a deployment mistake.
func explain(err error, cfg Config) error {
	// librdkafka's errors, whether confluent-kafka-go's kafka.Error or the loop's own clients'.
	var ke interface{ Code() kafka.ErrorCode }
	if errors.As(err, &ke) {
		switch ke.Code() {
		case kafka.ErrFenced, kafka.ErrProducerFenced, kafka.ErrInvalidProducerEpoch:
			return fmt.Errorf("fenced: the transaction coordinator no longer accepts one of this processor's producers "+
				"(transactional.id %s). Either another instance with that id is running (each live replica needs its own "+
				"PROCESSOR_INSTANCE_ID), or this transaction outlived PROCESSOR_TRANSACTION_TIMEOUT (the process was paused, "+
				"or a broker failover took longer) and the coordinator aborted it, which a restart recovers from: %w", cfg.transactionalIDs(), err)
		case kafka.ErrFencedInstanceID:
			return fmt.Errorf("fenced: the group coordinator gave group.instance.id %q of group %q to a newer member. "+
				"Either another live replica has the same PROCESSOR_INSTANCE_ID (each needs its own), or the coordinator "+
				"failed over and librdkafka's static member rejoined in its own way (librdkafka issue 3437), which a "+
				"restart resolves: %w", cfg.InstanceID, cfg.GroupID, err)
		}
	}
	return err
}

// servePprof serves Go's profiler on its own listener, so the probes' and scrapes' port never exposes it.
func servePprof(ln net.Listener, log *slog.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	// No write timeout: a CPU profile or trace streams for as long as its seconds parameter asks.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof server stopped", "error", err)
		}
	}()
	return func() { _ = srv.Close() }
}

// loopProgress is what the probes ask of the loop.
type loopProgress interface {
	LastIteration() time.Time // when the loop last went round, or the time it started
	Initialized() bool        // the producer has fenced its predecessors
}

// groupMember is what the readiness probe asks of the consumer.
type groupMember interface {
	Joined() bool
}

// lateProbes answer the probes (and the offset-reset gauge) before the loop and the consumer exist: alive (each
// start-up step has a timeout of its own), not ready; then as they do.
type lateProbes struct {
	loop   atomic.Value // loopProgress, once the loop exists
	member atomic.Value // groupMember, once the consumer exists
}

func (l *lateProbes) LastIteration() time.Time {
	if lp, ok := l.loop.Load().(loopProgress); ok {
		return lp.LastIteration()
	}
	return time.Now()
}

func (l *lateProbes) Initialized() bool {
	lp, ok := l.loop.Load().(loopProgress)
	return ok && lp.Initialized()
}

func (l *lateProbes) Joined() bool {
	m, ok := l.member.Load().(groupMember)
	return ok && m.Joined()
}

// offsetResets is the consumer's count of offsets reset by retention, 0 before it exists.
func (l *lateProbes) offsetResets() float64 {
	if c, ok := l.member.Load().(interface{ OffsetResets() uint64 }); ok {
		return float64(c.OffsetResets())
	}
	return 0
}

// handler serves /metrics from metrics (when not nil), /healthz (the loop went round within stale) and /readyz.
func handler(metrics prometheus.Gatherer, loop loopProgress, consumer groupMember, stale time.Duration) http.Handler {
	mux := http.NewServeMux()
	// Read-only endpoints: GET and HEAD only (the patterns' method), anything else is 405.
	if metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if since := time.Since(loop.LastIteration()); since > stale {
			http.Error(w, fmt.Sprintf("loop stuck: no progress for %s", since.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// Ready once the producer has fenced its predecessors and the consumer is a member of the group. Owning
	// partitions is not required: a replica beyond the partition count is a standby, and were it never ready, it
	// would hold a rolling update and count against the PodDisruptionBudget for ever.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !loop.Initialized():
			http.Error(w, "producer not initialized", http.StatusServiceUnavailable)
		case !consumer.Joined():
			http.Error(w, "not yet a member of the consumer group", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
	return mux
}

// withTestKnobs wraps the transform with the PROCESSOR_TEST_ behaviours end-to-end tests drive: failing records
// that carry a header (to exercise the dead-letter path) and a per-record cost (to exercise backpressure).
func withTestKnobs(t stream.Transform, failHeader string, cost time.Duration) stream.Transform {
	if failHeader == "" && cost == 0 {
		return t
	}
	return func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		if cost > 0 {
			// A busy wait, like a CPU-bound transform; a timer would oversleep a 100 µs cost by a millisecond on
			// a loaded machine and make the knob meaningless.
			for deadline := time.Now().Add(cost); time.Now().Before(deadline); {
				if ctx.Err() != nil {
					return nil, context.Cause(ctx)
				}
			}
		}
		if failHeader != "" {
			for _, h := range in.Headers {
				if h.Key == failHeader {
					return nil, fmt.Errorf("record carries test failure header %q", failHeader)
				}
			}
		}
		return t(ctx, in)
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}
