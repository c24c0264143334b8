package processor

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/eosproc/eosproc/consume"
	"github.com/eosproc/eosproc/dedupe"
	"github.com/eosproc/eosproc/internal/librdkafka"
	"github.com/eosproc/eosproc/internal/rdkafka"
	"github.com/eosproc/eosproc/produce"
)

// EnvPrefix starts every variable the processor reads.
const EnvPrefix = "PROCESSOR_"

// Config is the processor's whole configuration. Each field's tags are its reference: env is the variable (after
// EnvPrefix), envDefault its default, defaultDoc a default computed from other fields, and help what it means;
// `processor -h` prints them. A zero field gets its default (a setting whose default is true is a *bool, nil
// for the default), so a Config built in Go with only the three required fields behaves as the binary does with
// only their three variables set.
type Config struct {
	Brokers     string   `env:"BROKERS" help:"Kafka bootstrap servers, host:port[,host:port...]. Required."`
	InputTopics []string `env:"INPUT_TOPICS" help:"Comma-separated topics to read. Required."`
	OutputTopic string   `env:"OUTPUT_TOPIC" help:"Topic outputs are written to. Must not be an input topic. Required."`

	AppID      string `env:"APP_ID" envDefault:"eosproc" help:"Application name (Kafka Streams: application.id). Prefixes the transactional.id and names the default group and dead-letter topic."`
	GroupID    string `env:"GROUP_ID" defaultDoc:"value of APP_ID" help:"Consumer group; all replicas of one application share it."`
	InstanceID string `env:"INSTANCE_ID" defaultDoc:"host name" help:"This replica's stable identity: transactional.id is <APP_ID>-<INSTANCE_ID> (its second producer's <APP_ID>-<INSTANCE_ID>~1; and, with STATIC_MEMBERSHIP, group.instance.id is INSTANCE_ID). Stable across restarts (a restart fences its own zombie), unique among live replicas (a StatefulSet's pod name fits)."`

	StaticMembership bool `env:"STATIC_MEMBERSHIP" envDefault:"false" help:"Join the group as a static member (group.instance.id = INSTANCE_ID), so a replica restarted within the session timeout gets its partitions back without a rebalance (KIP-345). Off by default: with librdkafka 2.11, after a group coordinator moves, a static member can be fenced by its own rejoin (librdkafka issue 3437; exit 1, the restart recovers), and a static member replaced while it owed a cooperative revocation left that partition unassigned for minutes in our fault tests. false: a rebalance per restart instead."`

	BatchInterval      time.Duration `env:"BATCH_INTERVAL" envDefault:"500ms" help:"How long a micro-batch collects records; one batch is one transaction (Kafka Streams: commit.interval.ms; Spark: batch interval). Must be below TRANSACTION_TIMEOUT."`
	BatchRecords       int           `env:"BATCH_RECORDS" envDefault:"10000" help:"A batch closes at this many input records before its interval ends, while the input keeps up, so that a steady load does not wait out the whole interval in every batch: under a steady load a record waits for its batch to fill, so a smaller size means a lower latency, and more transactions per second, which near the loop's capacity can raise the latency's tail (a load that runs close to capacity is better served by a larger size). A full batch that must wait for the transaction before it keeps taking what arrives, up to MAX_BATCH_RECORDS and 16 MiB of keys and values. At most MAX_BATCH_RECORDS (a larger value counts as MAX_BATCH_RECORDS)."`
	MaxBatchRecords    int           `env:"MAX_BATCH_RECORDS" envDefault:"50000" help:"Most input records in one batch (one transaction), at most 1000000. While a backlog waits (a batch closed full and at least another batch is behind it), each batch may take twice as many records as the one before, from BATCH_RECORDS up to this and while twice the last batch's keys and values stay within 32 MiB: each transaction costs a few round trips to the coordinators whatever its size, so larger batches drain a backlog faster. A batch's records stay in memory until its transaction commits. librdkafka's prefetch is sized from it (a quarter of a batch per partition, 1,000 to 5,000 records)."`
	TransactionTimeout time.Duration `env:"TRANSACTION_TIMEOUT" envDefault:"60s" help:"Broker aborts a transaction open this long (transaction.timeout.ms); bounds how long a crashed replica blocks read_committed readers. At most the broker's transaction.max.timeout.ms (15m by default)."`
	DeadLetterTopic    string        `env:"DEAD_LETTER_TOPIC" defaultDoc:"<APP_ID>-dlq" help:"Topic for records the transform fails on, with the error, the stage that failed and the source position in headers. Must not be an input topic."`
	ErrorsTolerance    string        `env:"ERRORS_TOLERANCE" envDefault:"all" help:"all: a record the transform fails on goes to the dead-letter topic and the pipeline goes on. none: it stops the processor (exit 1, the record named) without committing its batch, for pipelines where a bad record must stop the line. Kafka Connect: errors.tolerance."`

	AutoOffsetReset        string `env:"AUTO_OFFSET_RESET" envDefault:"earliest" help:"Where a partition without committed offset starts, and where an offset deleted by retention resets to: earliest or latest."`
	ProcessingGuarantee    string `env:"PROCESSING_GUARANTEE" envDefault:"exactly_once" help:"exactly_once (transactions) or at_least_once (produce, flush, then commit offsets; duplicates after a crash). Kafka Streams: processing.guarantee."`
	TransactionalProducers int    `env:"TRANSACTIONAL_PRODUCERS" envDefault:"2" help:"exactly_once: 1 or 2 producers taking the transactions in turn. With 2 (transactional.id <APP_ID>-<INSTANCE_ID> and <APP_ID>-<INSTANCE_ID>~1: grant both where transactional ids need ACLs) the next batch's transaction begins and writes on the other producer as soon as the previous one's outputs are acknowledged, while that one commits, instead of waiting for the commit and for the coordinator to finish it (librdkafka retries the next transaction's first request after 20 ms until then): in make bench on 2 cores, 1 KB backlogs drained about a tenth faster, 100 B ones and the latency were unchanged. With DEDUPE_IDENTITY one is used. Going from 2 to 1 while a replica is down leaves what its second producer had open to TRANSACTION_TIMEOUT (nothing is lost; outputs wait until then)."`

	HTTPAddr        string        `env:"HTTP_ADDR" envDefault:":8080" help:"Listen address for /metrics, /healthz and /readyz."`
	PprofAddr       string        `env:"PPROF_ADDR" defaultDoc:"off" help:"Listen address for Go's profiler (/debug/pprof/), e.g. 127.0.0.1:6060; off when empty. Kept off the HTTP_ADDR port so probes and scrapes never reach it; bind it to loopback and port-forward."`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" help:"On SIGTERM/SIGINT, how long the batch in flight may take to commit before it is aborted."`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error. Logs are JSON on stderr."`

	KafkaProperties    Properties `env:"KAFKA_PROPERTIES" help:"librdkafka properties for both clients, key=value;key=value (TLS, SASL, tuning). Properties the guarantees depend on are refused."`
	ConsumerProperties Properties `env:"CONSUMER_PROPERTIES" help:"librdkafka properties for the consumer only; override KAFKA_PROPERTIES."`
	ProducerProperties Properties `env:"PRODUCER_PROPERTIES" help:"librdkafka properties for the producer only; override KAFKA_PROPERTIES. message.timeout.ms (default 3/4 of TRANSACTION_TIMEOUT) must stay below TRANSACTION_TIMEOUT."`

	// Security: each variable maps onto one librdkafka property for every client; secrets can come from files
	// (mounted Kubernetes Secrets) and are never shown in logs, -h, error messages or metrics.
	SecurityProtocol   string        `env:"SECURITY_PROTOCOL" defaultDoc:"plaintext" help:"How clients reach the brokers: plaintext, ssl, sasl_plaintext or sasl_ssl (librdkafka security.protocol). Must match the brokers' listener."`
	SASLMechanism      string        `env:"SASL_MECHANISM" envDefault:"SCRAM-SHA-512" help:"SASL mechanism used when SASL_USERNAME is set: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (sasl.mechanism)."`
	SASLUsername       string        `env:"SASL_USERNAME" help:"SASL user name (sasl.username); needs SECURITY_PROTOCOL sasl_ssl or sasl_plaintext."`
	SASLPassword       Secret        `env:"SASL_PASSWORD" help:"SASL password (sasl.password). Never shown; prefer SASL_PASSWORD_FILE."`
	SASLPasswordFile   string        `env:"SASL_PASSWORD_FILE" help:"File holding the SASL password, e.g. a mounted Kubernetes Secret; one trailing newline is ignored. Instead of SASL_PASSWORD."`
	TLSCAFile          string        `env:"TLS_CA_FILE" defaultDoc:"system CA store" help:"PEM file with the CA certificates that signed the brokers' certificates (ssl.ca.location)."`
	TLSCertFile        string        `env:"TLS_CERT_FILE" help:"PEM client certificate, for brokers that authenticate clients by TLS (ssl.certificate.location). Needs TLS_KEY_FILE."`
	TLSKeyFile         string        `env:"TLS_KEY_FILE" help:"PEM private key of TLS_CERT_FILE (ssl.key.location)."`
	TLSKeyPassword     Secret        `env:"TLS_KEY_PASSWORD" help:"Password of an encrypted TLS_KEY_FILE (ssl.key.password). Never shown; prefer TLS_KEY_PASSWORD_FILE."`
	TLSKeyPasswordFile string        `env:"TLS_KEY_PASSWORD_FILE" help:"File holding the TLS key password. Instead of TLS_KEY_PASSWORD."`
	AuthFailureTimeout time.Duration `env:"AUTH_FAILURE_TIMEOUT" envDefault:"30s" help:"How long the brokers may keep refusing authentication or the TLS handshake, before the processor has ever got through, until it exits 1 saying what to check. It is also the shortest life of a misconfigured replica, so a supervisor restarting it cannot hammer the brokers."`

	Backpressure            *bool   `env:"BACKPRESSURE_ENABLED" envDefault:"true" help:"Rate-limit each input partition from the measured batch processing time, so a slow transform settles at the rate it sustains instead of stretching batches (Spark: spark.streaming.backpressure.enabled)."`
	BackpressureInitialRate float64 `env:"BACKPRESSURE_INITIAL_RATE" defaultDoc:"none" help:"Total records/s before the first batch is measured (Spark: spark.streaming.backpressure.initialRate). None: the first batch takes up to MAX_BATCH_RECORDS, so a backlog is not throttled before anything is measured."`
	BackpressureMinRate     float64 `env:"BACKPRESSURE_MIN_RATE_PER_PARTITION" envDefault:"1" help:"Records/s every lagging partition gets at least, so none starves (Spark: spark.streaming.kafka.minRatePerPartition)."`
	BackpressureMaxRate     float64 `env:"BACKPRESSURE_MAX_RATE_PER_PARTITION" defaultDoc:"no cap" help:"Records/s no partition exceeds (Spark: spark.streaming.kafka.maxRatePerPartition)."`

	DedupeIdentity   string        `env:"DEDUPE_IDENTITY" help:"Turns on exactly-once de-duplication and says where a record's identity is: key, header:<name> or json:<field.path>. Records with one identity must be in one input partition (keyed by it upstream). State is kept in the compacted topics <APP_ID>-dedupe-<input topic>, created when missing."`
	DedupeWindow     time.Duration `env:"DEDUPE_WINDOW" envDefault:"1h" help:"A record is dropped when its identity was seen at most this long before (by record timestamp)."`
	DedupeMaxEntries int           `env:"DEDUPE_MAX_ENTRIES" envDefault:"100000" help:"Identities kept per input partition (about 112 bytes each); beyond it the oldest are forgotten first."`

	// Transform stages (docs/transforms.md), applied in this order to each record; each is an expression
	// (expr-lang/expr) over value, key, headers, topic, partition, offset and timestamp, compiled at start.
	Filter      string   `env:"FILTER" help:"Keeps the records for which this expression is true, e.g. value.status == \"paid\"; the others produce nothing (their offsets are committed all the same)."`
	Map         string   `env:"MAP" help:"Builds the new value, written as JSON, e.g. {\"id\": value.id, \"cents\": int(round(value.amount * 100))}."`
	Key         string   `env:"KEY" help:"Computes the output key, hence its partition, e.g. value.customer. A string, number or boolean; nil for no key."`
	HeadersSet  string   `env:"HEADERS_SET" help:"Sets headers: a map of name to value, e.g. {\"region\": value.country}; a nil value removes the header."`
	HeadersDrop []string `env:"HEADERS_DROP" help:"Comma-separated header names to remove."`
	Route       string   `env:"ROUTE" help:"Chooses each record's output topic, e.g. value.amount > 1000 ? \"orders-large\" : \"orders\". A topic outside ROUTE_TOPICS and OUTPUT_TOPIC dead-letters the record."`
	RouteTopics []string `env:"ROUTE_TOPICS" help:"Comma-separated topics ROUTE may choose besides OUTPUT_TOPIC. Required with ROUTE."`

	TestFailHeader        string        `env:"TEST_FAIL_HEADER" help:"Testing only: a record carrying a header with this name fails the transform, so it is dead-lettered."`
	TestCostPerRecord     time.Duration `env:"TEST_COST_PER_RECORD" help:"Testing only: time the transform spends per record, to simulate slow processing."`
	TestAbortRatio        float64       `env:"TEST_ABORT_RATIO" help:"Testing only: share of transactions (0 to 1) aborted on purpose just before commit, as fault tests do."`
	TestSerialLoop        bool          `env:"TEST_SERIAL_LOOP" envDefault:"false" help:"Testing only: assemble a batch only once the previous transaction has settled (the loop before pipelining), so that make bench measures what pipelining gains."`
	TestCPUProfile        string        `env:"TEST_CPU_PROFILE" help:"Testing only: write a CPU profile of the whole run to this file (go tool pprof), as make bench does for its profile section."`
	TestStopInTransaction int           `env:"TEST_STOP_IN_TRANSACTION" help:"Testing only: in this transaction (counted from 1), after producing its outputs and before sending its offsets (at_least_once: after they are delivered and before the offsets are committed), the process stops itself with SIGSTOP, as a frozen host would; 0 never."`
}

// Properties are librdkafka properties, written key=value;key=value in the environment.
type Properties map[string]string

// UnmarshalText parses key=value;key=value; empty entries (a trailing ;) are allowed.
func (p *Properties) UnmarshalText(text []byte) error {
	m := Properties{}
	for _, entry := range strings.Split(string(text), ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		k, v, ok := strings.Cut(entry, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			if rdkafka.IsSecret(entry) {
				return fmt.Errorf("an entry that may hold a secret (not shown) is not key=value (write key=value;key=value)")
			}
			return fmt.Errorf("entry %q is not key=value (write key=value;key=value)", entry)
		}
		m[k] = strings.TrimSpace(v)
	}
	*p = m
	return nil
}

// insteadOf says, for librdkafka properties the clients own, which variable sets them instead; the other owned
// properties are refused with their package's reason (consume.OwnedProperties, produce.OwnedProperties). Letting
// a user override them would silently void a guarantee (isolation.level=read_uncommitted reads aborted outputs,
// enable.auto.commit commits unproduced records, ...).
var insteadOf = map[string]string{
	"bootstrap.servers":      "set PROCESSOR_BROKERS",
	"metadata.broker.list":   "set PROCESSOR_BROKERS",
	"group.id":               "set PROCESSOR_GROUP_ID",
	"group.instance.id":      "set PROCESSOR_INSTANCE_ID and PROCESSOR_STATIC_MEMBERSHIP",
	"transactional.id":       "set PROCESSOR_APP_ID and PROCESSOR_INSTANCE_ID",
	"transaction.timeout.ms": "set PROCESSOR_TRANSACTION_TIMEOUT",
	"auto.offset.reset":      "set PROCESSOR_AUTO_OFFSET_RESET",
	"max.poll.interval.ms":   "derived from PROCESSOR_TRANSACTION_TIMEOUT and PROCESSOR_BATCH_INTERVAL",
}

// ownedBy returns why a property in the variable key (KAFKA_PROPERTIES, CONSUMER_PROPERTIES or
// PRODUCER_PROPERTIES) cannot be set, or "" if it can. The producer's delivery timeout is the one owned property
// the configuration may set: the processor reads it and hands it to the producer itself.
func ownedBy(key, property string) string {
	if property == "message.timeout.ms" || property == "delivery.timeout.ms" {
		if key == "CONSUMER_PROPERTIES" {
			return "it is a producer property; set it in PROCESSOR_PRODUCER_PROPERTIES"
		}
		return ""
	}
	if strings.HasPrefix(property, "go.") {
		return "the processor configures the Go client itself"
	}
	why, ok := "", false
	if key != "PRODUCER_PROPERTIES" {
		why, ok = consume.OwnedProperties[property]
	}
	if !ok && key != "CONSUMER_PROPERTIES" {
		why, ok = produce.OwnedProperties[property]
	}
	if !ok {
		return ""
	}
	if hint, ok := insteadOf[property]; ok {
		return hint
	}
	return why
}

// ConfigError is an invalid or missing configuration value: the binary exits with code 2 on it.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// LoadConfig reads the configuration from environ (os.Environ's form) and checks it. Every problem found is
// reported at once, each naming its variable.
func LoadConfig(environ []string) (Config, error) {
	vars := map[string]string{}
	var problems []string
	known := map[string]bool{}
	for _, f := range fields() {
		known[EnvPrefix+f.key] = true
	}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
		if strings.HasPrefix(k, EnvPrefix) && !known[k] {
			problems = append(problems, fmt.Sprintf("%s: unknown variable (misspelt?); `processor -h` lists them all", k))
		}
	}
	var cfg Config
	unparsed := map[string]bool{} // variables whose value did not parse: reported once, not again as zero
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: EnvPrefix, Environment: vars}); err != nil {
		problems = append(problems, parseProblems(err, vars, unparsed)...)
	}
	// resolve gives zero fields their defaults, which suits a Config built in Go; a variable set to zero is a
	// mistake to report, not a request for the default.
	for _, f := range fields() {
		name := EnvPrefix + f.key
		numeric := f.typ.Kind() == reflect.Int || f.typ.Kind() == reflect.Int64 || f.typ.Kind() == reflect.Float64
		if v, set := vars[name]; set && numeric && !unparsed[name] && reflect.ValueOf(cfg).FieldByName(f.name).IsZero() {
			problems = append(problems, fmt.Sprintf("%s=%q: must be above zero (unset it for the default)", name, v))
		}
	}
	// The other checks run even when some values did not parse, so that every problem is reported at once; what
	// they say about a variable already reported is left out (its value there is a default, not the user's).
	if err := cfg.resolve(); err != nil {
		var ce *ConfigError
		if !errors.As(err, &ce) {
			return cfg, err
		}
		for _, p := range ce.Problems {
			name, _, _ := strings.Cut(p, ":")
			name, _, _ = strings.Cut(name, "=")
			if !unparsed[name] {
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return cfg, &ConfigError{Problems: slices.Compact(problems)}
	}
	return cfg, nil
}

// parseProblems rewrites the env library's errors, which name Go fields, into messages naming the variable, its
// value and an example of a valid one.
func parseProblems(err error, vars map[string]string, unparsed map[string]bool) []string {
	byField := map[string]field{}
	for _, f := range fields() {
		byField[f.name] = f
	}
	errs := []error{err}
	var agg env.AggregateError
	if errors.As(err, &agg) {
		errs = agg.Errors
	}
	var out []string
	for _, e := range errs {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			out = append(out, e.Error())
			continue
		}
		f := byField[pe.Name]
		name := EnvPrefix + f.key
		what := pe.Err.Error()
		switch f.typ {
		case reflect.TypeFor[time.Duration]():
			what = "not a duration (e.g. 500ms, 2s, 1m)"
		case reflect.TypeFor[int]():
			what = "not a whole number (e.g. 10000)"
			if errors.Is(pe.Err, strconv.ErrRange) {
				what = fmt.Sprintf("out of range: a whole number up to %d", math.MaxInt32)
			}
		case reflect.TypeFor[float64]():
			what = "not a number (e.g. 5000)"
		case reflect.TypeFor[bool]():
			what = "not true or false"
		}
		unparsed[name] = true
		value := vars[name]
		if f.typ == reflect.TypeFor[Secret]() || rdkafka.IsSecret(value) {
			value = redacted
		}
		out = append(out, fmt.Sprintf("%s=%q: %s", name, value, what))
	}
	return out
}

// resolve fills defaults for zero fields (those with envDefault from the tag, the computed ones from the other
// fields) and checks the result.
func (c *Config) resolve() error {
	var defaults Config
	if err := env.ParseWithOptions(&defaults, env.Options{Prefix: EnvPrefix, Environment: map[string]string{}}); err != nil {
		return fmt.Errorf("parse default values: %w", err) // a broken envDefault tag: a bug, not a user error
	}
	cv, dv := reflect.ValueOf(c).Elem(), reflect.ValueOf(defaults)
	for i := range cv.NumField() {
		// A false bool is a choice, not a missing value: the settings whose default is true are *bool, nil unset.
		if cv.Field(i).IsZero() && cv.Field(i).Kind() != reflect.Bool {
			cv.Field(i).Set(dv.Field(i))
		}
	}
	if c.GroupID == "" {
		c.GroupID = c.AppID
	}
	if c.InstanceID == "" {
		host, err := os.Hostname()
		if err != nil {
			return &ConfigError{Problems: []string{fmt.Sprintf("%sINSTANCE_ID: not set and the host name is unknown (%v); set it", EnvPrefix, err)}}
		}
		c.InstanceID = host
	}
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = c.AppID + "-dlq"
	}
	if problems := c.resolveSecretFiles(); len(problems) > 0 {
		return &ConfigError{Problems: problems}
	}
	return c.validate()
}

// problemFunc reports a problem with a variable (named without EnvPrefix).
type problemFunc func(key, format string, args ...any)

func (c *Config) validate() error {
	var p []string
	bad := func(key, format string, args ...any) { p = append(p, EnvPrefix+key+": "+fmt.Sprintf(format, args...)) }
	c.validateTopics(bad)
	c.validateAddresses(bad)
	c.validateNumbers(bad)
	c.validateChoices(bad)
	c.validateProperties(bad)
	c.validateSecurity(bad)
	p = append(p, c.stageProblems()...)
	if len(p) > 0 {
		slices.Sort(p)
		return &ConfigError{Problems: p}
	}
	return nil
}

// validateTopics checks the topic names, the application id that names topics, and that nothing the processor
// writes is also an input.
func (c *Config) validateTopics(bad problemFunc) {
	c.InputTopics = slices.DeleteFunc(c.InputTopics, func(t string) bool { return strings.TrimSpace(t) == "" })
	if len(c.InputTopics) == 0 {
		bad("INPUT_TOPICS", "not set; set it to the comma-separated topics to read, e.g. orders,payments")
	}
	for _, t := range c.InputTopics {
		if strings.HasPrefix(t, "^") {
			bad("INPUT_TOPICS", "%q: regular-expression subscriptions are not supported (the output and dead-letter topics must be checked against every input); list the topics", t)
		} else if err := checkTopicName(t); err != nil {
			bad("INPUT_TOPICS", "%q: %v", t, err)
		}
	}
	if c.OutputTopic == "" {
		bad("OUTPUT_TOPIC", "not set; set it to the topic outputs go to")
	} else if err := checkTopicName(c.OutputTopic); err != nil {
		bad("OUTPUT_TOPIC", "%q: %v", c.OutputTopic, err)
	}
	if err := checkTopicName(c.DeadLetterTopic); err != nil {
		key := "DEAD_LETTER_TOPIC"
		if c.DeadLetterTopic == c.AppID+"-dlq" {
			key = "APP_ID" // the default dead-letter topic is derived from it
		}
		bad(key, "%q: the dead-letter topic %q is not a valid topic name: %v", cmp.Or(c.AppID, c.DeadLetterTopic), c.DeadLetterTopic, err)
	}
	for _, t := range c.RouteTopics {
		if err := checkTopicName(t); err != nil {
			bad("ROUTE_TOPICS", "%q: %v", t, err)
		}
	}
	if slices.Contains(c.InputTopics, c.OutputTopic) {
		bad("OUTPUT_TOPIC", "%q is also an input topic; the processor would read its own output forever", c.OutputTopic)
	}
	if slices.Contains(c.InputTopics, c.DeadLetterTopic) {
		bad("DEAD_LETTER_TOPIC", "%q is also an input topic; dead letters would be processed again", c.DeadLetterTopic)
	}
	if c.AppID == "" || strings.ContainsAny(c.AppID, " \t") {
		bad("APP_ID", "%q: must be non-empty and without spaces", c.AppID)
	} else if err := checkTopicName(c.AppID + "-dedupe-x"); err != nil {
		bad("APP_ID", "%q: it names topics (<APP_ID>-dlq, <APP_ID>-dedupe-<input>), so it must be a valid topic name: %v", c.AppID, err)
	}
	if c.DedupeIdentity != "" {
		for _, in := range c.InputTopics {
			// Each part may be a valid name and their join too long (Kafka allows 249 characters).
			changelog := changelogTopic(c.AppID, in)
			if err := checkTopicName(changelog); err != nil && checkTopicName(in) == nil {
				bad("APP_ID", "%q: the de-duplication changelog of input %q, %q, is not a valid topic name: %v", c.AppID, in, changelog, err)
			}
		}
	}
	if strings.ContainsAny(c.InstanceID, " \t") {
		bad("INSTANCE_ID", "%q: must not contain spaces", c.InstanceID)
	}
}

// validateAddresses checks the brokers' and the processor's own listen addresses.
func (c *Config) validateAddresses(bad problemFunc) {
	if brokers := splitList(c.Brokers); len(brokers) == 0 {
		bad("BROKERS", "not set; set it to the Kafka bootstrap servers, e.g. localhost:9092")
	} else {
		for _, b := range brokers {
			if err := checkHostPort(b, false); err != nil {
				bad("BROKERS", "%q: %v; write host:port[,host:port...], e.g. kafka-0:9092,kafka-1:9092", b, err)
			}
		}
	}
	if err := checkHostPort(c.HTTPAddr, true); err != nil {
		bad("HTTP_ADDR", "%q: %v; write [host]:port, e.g. :8080 or 127.0.0.1:8080", c.HTTPAddr, err)
	}
	if c.PprofAddr != "" {
		if err := checkHostPort(c.PprofAddr, true); err != nil {
			bad("PPROF_ADDR", "%q: %v; write [host]:port, e.g. 127.0.0.1:6060, or leave it empty for no profiler", c.PprofAddr, err)
		} else if c.PprofAddr == c.HTTPAddr && !strings.HasSuffix(c.PprofAddr, ":0") {
			bad("PPROF_ADDR", "%q: the same address as PROCESSOR_HTTP_ADDR; the profiler needs its own port", c.PprofAddr)
		}
	}
}

// maxBatchRecords bounds PROCESSOR_MAX_BATCH_RECORDS.
const maxBatchRecords = 1_000_000

// validateNumbers checks sizes, durations and rates, alone and against each other.
func (c *Config) validateNumbers(bad problemFunc) {
	if c.DedupeWindow <= 0 {
		bad("DEDUPE_WINDOW", "%s: must be positive", c.DedupeWindow)
	}
	if c.DedupeMaxEntries <= 0 {
		bad("DEDUPE_MAX_ENTRIES", "%d: must be at least 1", c.DedupeMaxEntries)
	}
	if c.BatchRecords <= 0 {
		bad("BATCH_RECORDS", "%d: must be at least 1", c.BatchRecords)
	}
	if c.MaxBatchRecords <= 0 {
		bad("MAX_BATCH_RECORDS", "%d: must be at least 1", c.MaxBatchRecords)
	}
	if c.TransactionalProducers != 1 && c.TransactionalProducers != 2 {
		bad("TRANSACTIONAL_PRODUCERS", "%d: must be 1 or 2", c.TransactionalProducers)
	}
	if c.MaxBatchRecords > maxBatchRecords {
		// Beyond it the consumer's prefetch, sized from the batch, leaves librdkafka's range, and a batch's records
		// stay in memory until its transaction commits.
		bad("MAX_BATCH_RECORDS", "%d: at most %d (one batch is one transaction, its records held in memory until it commits)",
			c.MaxBatchRecords, maxBatchRecords)
	}
	for key, d := range map[string]time.Duration{"BATCH_INTERVAL": c.BatchInterval, "TRANSACTION_TIMEOUT": c.TransactionTimeout, "SHUTDOWN_TIMEOUT": c.ShutdownTimeout} {
		if d <= 0 {
			bad(key, "%s: must be positive", d)
		}
	}
	if c.TransactionTimeout%time.Millisecond != 0 || c.TransactionTimeout < time.Second {
		bad("TRANSACTION_TIMEOUT", "%s: must be whole milliseconds and at least 1s", c.TransactionTimeout)
	}
	// max.poll.interval.ms, derived as 2 x TRANSACTION_TIMEOUT + BATCH_INTERVAL, has librdkafka's limit of 24 hours.
	if 2*c.TransactionTimeout+c.BatchInterval > 24*time.Hour {
		bad("TRANSACTION_TIMEOUT", "%s: too long; the consumer's max.poll.interval.ms (2 x TRANSACTION_TIMEOUT + BATCH_INTERVAL) must stay within 24h, and brokers allow at most transaction.max.timeout.ms (15m by default)", c.TransactionTimeout)
	}
	if c.BatchInterval >= c.TransactionTimeout {
		bad("BATCH_INTERVAL", "%s must be below PROCESSOR_TRANSACTION_TIMEOUT (%s): a batch must commit before the broker aborts it", c.BatchInterval, c.TransactionTimeout)
	}
	for key, rate := range map[string]float64{"BACKPRESSURE_INITIAL_RATE": c.BackpressureInitialRate,
		"BACKPRESSURE_MIN_RATE_PER_PARTITION": c.BackpressureMinRate, "BACKPRESSURE_MAX_RATE_PER_PARTITION": c.BackpressureMaxRate} {
		if rate < 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
			bad(key, "%g: must be a number of records per second, not negative", rate)
		}
	}
	if c.BackpressureMaxRate > 0 && c.BackpressureMaxRate < c.BackpressureMinRate {
		bad("BACKPRESSURE_MAX_RATE_PER_PARTITION", "%g is below PROCESSOR_BACKPRESSURE_MIN_RATE_PER_PARTITION (%g)", c.BackpressureMaxRate, c.BackpressureMinRate)
	}
	if !(c.TestAbortRatio >= 0 && c.TestAbortRatio < 1) { // NaN too
		bad("TEST_ABORT_RATIO", "%g: must be at least 0 and below 1", c.TestAbortRatio)
	}
	if c.TestCostPerRecord < 0 {
		bad("TEST_COST_PER_RECORD", "%s: must not be negative", c.TestCostPerRecord)
	}
	if c.TestStopInTransaction < 0 {
		bad("TEST_STOP_IN_TRANSACTION", "%d: must not be negative", c.TestStopInTransaction)
	}
}

// validateChoices checks the settings that take one of a few values or a small language.
func (c *Config) validateChoices(bad problemFunc) {
	if !slices.Contains([]string{"earliest", "latest"}, c.AutoOffsetReset) {
		bad("AUTO_OFFSET_RESET", "%q: must be earliest or latest", c.AutoOffsetReset)
	}
	if !slices.Contains([]string{"exactly_once", "at_least_once"}, c.ProcessingGuarantee) {
		bad("PROCESSING_GUARANTEE", "%q: must be exactly_once or at_least_once", c.ProcessingGuarantee)
	}
	if !slices.Contains([]string{"all", "none"}, c.ErrorsTolerance) {
		bad("ERRORS_TOLERANCE", "%q: must be all (dead-letter records the transform fails on) or none (stop on the first)", c.ErrorsTolerance)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", "%q: must be debug, info, warn or error", c.LogLevel)
	}
	if c.DedupeIdentity != "" {
		if _, err := dedupe.ParseIdentitySpec(c.DedupeIdentity); err != nil {
			bad("DEDUPE_IDENTITY", "%q: %v", c.DedupeIdentity, err)
		}
	}
}

// validateProperties checks the pass-through librdkafka properties: none the processor owns, each one librdkafka
// accepts, and a message timeout below the transaction timeout.
func (c *Config) validateProperties(bad problemFunc) {
	for key, props := range map[string]Properties{"KAFKA_PROPERTIES": c.KafkaProperties, "CONSUMER_PROPERTIES": c.ConsumerProperties, "PRODUCER_PROPERTIES": c.ProducerProperties} {
		for _, k := range slices.Sorted(maps.Keys(props)) {
			if why := ownedBy(key, k); why != "" {
				bad(key, "%q cannot be set here: %s", k, why)
			} else if err := librdkafka.CheckProperty(k, props[k]); err != nil {
				if rdkafka.IsSecret(k) && strings.Contains(err.Error(), props[k]) {
					bad(key, "librdkafka refuses the value of %q (not shown: it may be a secret)", k)
				} else {
					bad(key, "%v; librdkafka's properties are listed in its CONFIGURATION.md", err)
				}
			}
		}
	}
	if mt, key, err := c.messageTimeout(); err != nil {
		bad(key, "%v", err)
	} else if mt >= c.TransactionTimeout {
		bad(key, "message.timeout.ms (%s) must be below PROCESSOR_TRANSACTION_TIMEOUT (%s): a record still retrying after the broker aborted its transaction fails the producer", mt, c.TransactionTimeout)
	}
}

// splitList splits a comma-separated list and drops empty entries.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// checkHostPort checks a host:port; emptyHost allows ":port" (every interface).
func checkHostPort(hp string, emptyHost bool) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return errors.New("not host:port")
	}
	if host == "" && !emptyHost {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// checkTopicName applies Kafka's rule for topic names: 1 to 249 of the characters a-z, A-Z, 0-9, '.', '_' and
// '-', and neither "." nor "..".
func checkTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("empty topic name")
	case name == "." || name == "..":
		return errors.New(`"." and ".." are not topic names`)
	case len(name) > 249:
		return fmt.Errorf("%d characters, Kafka allows 249 in a topic name", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q is not allowed in a topic name (a-z, A-Z, 0-9, '.', '_', '-')", r)
		}
	}
	return nil
}

// messageTimeout is the producer's delivery timeout: message.timeout.ms (or its alias delivery.timeout.ms) from
// the properties if set, else three quarters of the transaction timeout, which leaves the commit time to notice
// a failed delivery. key names the variable it came from, for messages.
func (c *Config) messageTimeout() (d time.Duration, key string, err error) {
	d, key = c.TransactionTimeout*3/4, "PRODUCER_PROPERTIES"
	for _, src := range []struct {
		key   string
		props Properties
	}{{"KAFKA_PROPERTIES", c.KafkaProperties}, {"PRODUCER_PROPERTIES", c.ProducerProperties}} {
		for _, name := range []string{"message.timeout.ms", "delivery.timeout.ms"} {
			v, ok := src.props[name]
			if !ok {
				continue
			}
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms <= 0 {
				return 0, src.key, fmt.Errorf("%s=%q: not a positive number of milliseconds", name, v)
			}
			d, key = time.Duration(ms)*time.Millisecond, src.key
		}
	}
	return d, key, nil
}

// clientDefaults are librdkafka defaults the processor changes; any layer may override them.
//
// reconnect.backoff.ms: librdkafka is meant to double the pause between connection attempts up to
// reconnect.backoff.max.ms, but a connection that fails in the TLS handshake (an untrusted certificate) is
// retried at the initial pause again and again: measured here, 10 to 11 handshakes a second per client at
// librdkafka's 100 ms, about 1 a second at 1000 ms. Until PROCESSOR_AUTH_FAILURE_TIMEOUT ends such a process, the
// initial pause is what a misconfigured replica costs the brokers. A second costs at most that much extra after
// a broker restart, which takes longer than that anyway.
var clientDefaults = Properties{"reconnect.backoff.ms": "1000"}

// clientProperties merges layers of properties, later ones winning (security variables, then the shared
// properties, then one client's), without the message timeout, which is passed on its own.
func clientProperties(layers ...Properties) map[string]string {
	m := map[string]string{}
	for k, v := range clientDefaults {
		m[k] = v
	}
	for _, layer := range layers {
		for k, v := range layer {
			m[k] = v
		}
	}
	delete(m, "message.timeout.ms")
	delete(m, "delivery.timeout.ms")
	return m
}

// LogValue is the configuration as logged at start: JSON-friendly, with secret property values redacted.
func (c Config) LogValue() map[string]any {
	out := map[string]any{}
	for _, f := range fields() {
		v := reflect.ValueOf(c).FieldByName(f.name).Interface()
		if props, ok := v.(Properties); ok {
			red := map[string]string{}
			for k, val := range props {
				red[k] = val
				if rdkafka.IsSecret(k) {
					red[k] = redacted
				}
			}
			v = red
		}
		if s, ok := v.(Secret); ok {
			v = s.String()
		}
		if f.key == "SASL_USERNAME" && v != "" {
			// sasl.username is on librdkafka's list of properties it redacts, so it is on ours (rdkafka.IsSecret).
			v = redacted
		}
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		out[EnvPrefix+f.key] = v
	}
	return out
}

// String renders LogValue as JSON, so that printing a Config, even by accident, never shows a secret.
func (c Config) String() string {
	b, _ := json.Marshal(c.LogValue())
	return string(b)
}

// PrintUsage writes every variable with its default and meaning, from the Config's tags.
func PrintUsage(w io.Writer) {
	fmt.Fprintf(w, "processor: exactly-once Kafka-to-Kafka stream processor, configured by environment variables.\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, f := range fields() {
		def := f.def
		switch {
		case f.defDoc != "":
			def = f.defDoc
		case def == "":
			def = "-"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", EnvPrefix, f.key, def, f.help)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nExit codes: 0 clean shutdown, 1 runtime error (e.g. fenced by another instance), 2 invalid configuration.\n")
}

type field struct {
	name, key, def, defDoc, help string
	typ                          reflect.Type
}

func fields() []field {
	t := reflect.TypeFor[Config]()
	out := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		out = append(out, field{
			name: sf.Name, key: sf.Tag.Get("env"), def: sf.Tag.Get("envDefault"),
			defDoc: sf.Tag.Get("defaultDoc"), help: sf.Tag.Get("help"), typ: sf.Type,
		})
	}
	return out
}

// ShutdownBound is the longest a SIGTERM takes to end the process: the batch in flight gets ShutdownTimeout, a
// commit or abort that keeps failing retriably is retried for a TransactionTimeout more (the broker has aborted
// the transaction by then), and closing the clients and the HTTP server takes at most 15 s. A supervisor's grace
// period (Kubernetes' terminationGracePeriodSeconds) should exceed it.
func (c Config) ShutdownBound() time.Duration {
	return c.ShutdownTimeout + c.TransactionTimeout + 15*time.Second
}
