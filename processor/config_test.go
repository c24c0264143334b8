package processor

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eosproc/eosproc/consume"
)

var minimal = []string{"PROCESSOR_BROKERS=localhost:9092", "PROCESSOR_INPUT_TOPICS=a,b", "PROCESSOR_OUTPUT_TOPIC=out", "PROCESSOR_INSTANCE_ID=p-0"}

func TestLoadConfigAppliesDefaults(t *testing.T) {
	cfg, err := LoadConfig(minimal)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Brokers: "localhost:9092", InputTopics: []string{"a", "b"}, OutputTopic: "out",
		AppID: "eosproc", GroupID: "eosproc", InstanceID: "p-0", BatchInterval: 500 * time.Millisecond,
		BatchRecords: consume.DefaultBatchRecords, MaxBatchRecords: consume.DefaultMaxBatchRecords,
		TransactionTimeout: time.Minute, DeadLetterTopic: "eosproc-dlq",
		AutoOffsetReset: "earliest", ProcessingGuarantee: "exactly_once", TransactionalProducers: 2, ErrorsTolerance: "all", HTTPAddr: ":8080",
		ShutdownTimeout: 30 * time.Second, LogLevel: "info", Backpressure: new(true), BackpressureMinRate: 1,
		DedupeWindow: time.Hour, DedupeMaxEntries: 100_000,
		SASLMechanism: "SCRAM-SHA-512", AuthFailureTimeout: 30 * time.Second,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config\n got %+v\nwant %+v", cfg, want)
	}
	if mt, _, _ := cfg.messageTimeout(); mt != 45*time.Second {
		t.Errorf("message timeout = %s, want 3/4 of the transaction timeout", mt)
	}
}

func TestBackpressureCanBeSwitchedOff(t *testing.T) {
	cfg, err := LoadConfig(append(minimal, "PROCESSOR_BACKPRESSURE_ENABLED=false"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backpressure == nil || *cfg.Backpressure {
		t.Error("PROCESSOR_BACKPRESSURE_ENABLED=false left backpressure on")
	}
}

func TestComputedDefaultsFollowAppID(t *testing.T) {
	cfg, err := LoadConfig(append(minimal, "PROCESSOR_APP_ID=orders"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GroupID != "orders" || cfg.DeadLetterTopic != "orders-dlq" {
		t.Errorf("group %q, dead-letter topic %q; want orders and orders-dlq", cfg.GroupID, cfg.DeadLetterTopic)
	}
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	tests := []struct {
		name string
		env  []string // replaces or adds to minimal
		want string
	}{
		{"missing brokers", []string{"PROCESSOR_BROKERS="}, "PROCESSOR_BROKERS: not set"},
		{"missing inputs", []string{"PROCESSOR_INPUT_TOPICS="}, "PROCESSOR_INPUT_TOPICS: not set"},
		{"missing output", []string{"PROCESSOR_OUTPUT_TOPIC="}, "PROCESSOR_OUTPUT_TOPIC: not set"},
		{"bad duration", []string{"PROCESSOR_BATCH_INTERVAL=abc"}, `PROCESSOR_BATCH_INTERVAL="abc": not a duration (e.g. 500ms`},
		{"bad number", []string{"PROCESSOR_MAX_BATCH_RECORDS=many"}, `PROCESSOR_MAX_BATCH_RECORDS="many": not a whole number`},
		{"negative batch size", []string{"PROCESSOR_MAX_BATCH_RECORDS=-1"}, "PROCESSOR_MAX_BATCH_RECORDS: -1: must be at least 1"},
		{"three transactional producers", []string{"PROCESSOR_TRANSACTIONAL_PRODUCERS=3"}, "PROCESSOR_TRANSACTIONAL_PRODUCERS: 3: must be 1 or 2"},
		{"misspelt variable", []string{"PROCESSOR_BATCH_INTERVALS=1s"}, "PROCESSOR_BATCH_INTERVALS: unknown variable"},
		{"output is an input", []string{"PROCESSOR_OUTPUT_TOPIC=a"}, `PROCESSOR_OUTPUT_TOPIC: "a" is also an input topic`},
		{"dead letters are an input", []string{"PROCESSOR_DEAD_LETTER_TOPIC=b"}, `PROCESSOR_DEAD_LETTER_TOPIC: "b" is also an input topic`},
		{"batch interval not below transaction timeout", []string{"PROCESSOR_BATCH_INTERVAL=2m"}, "PROCESSOR_BATCH_INTERVAL: 2m0s must be below PROCESSOR_TRANSACTION_TIMEOUT"},
		{"message timeout not below transaction timeout", []string{"PROCESSOR_PRODUCER_PROPERTIES=message.timeout.ms=60000"}, "PROCESSOR_PRODUCER_PROPERTIES: message.timeout.ms (1m0s) must be below PROCESSOR_TRANSACTION_TIMEOUT"},
		{"delivery timeout alias checked too", []string{"PROCESSOR_KAFKA_PROPERTIES=delivery.timeout.ms=90000"}, "PROCESSOR_KAFKA_PROPERTIES: message.timeout.ms (1m30s)"},
		{"message timeout not a number", []string{"PROCESSOR_PRODUCER_PROPERTIES=message.timeout.ms=soon"}, `PROCESSOR_PRODUCER_PROPERTIES: message.timeout.ms="soon"`},
		{"isolation level protected", []string{"PROCESSOR_CONSUMER_PROPERTIES=isolation.level=read_uncommitted"}, `PROCESSOR_CONSUMER_PROPERTIES: "isolation.level" cannot be set here`},
		{"auto commit protected", []string{"PROCESSOR_KAFKA_PROPERTIES=enable.auto.commit=true"}, `PROCESSOR_KAFKA_PROPERTIES: "enable.auto.commit" cannot be set here`},
		{"transactional id protected", []string{"PROCESSOR_PRODUCER_PROPERTIES=transactional.id=x"}, `"transactional.id" cannot be set here: set PROCESSOR_APP_ID and PROCESSOR_INSTANCE_ID`},
		{"idempotence protected", []string{"PROCESSOR_PRODUCER_PROPERTIES=enable.idempotence=false"}, `"enable.idempotence" cannot be set here`},
		{"go client settings protected", []string{"PROCESSOR_KAFKA_PROPERTIES=go.events.channel.enable=true"}, `"go.events.channel.enable" cannot be set here`},
		{"malformed properties", []string{"PROCESSOR_KAFKA_PROPERTIES=linger.ms"}, `PROCESSOR_KAFKA_PROPERTIES="linger.ms": entry "linger.ms" is not key=value`},
		{"bad offset reset", []string{"PROCESSOR_AUTO_OFFSET_RESET=smallest"}, `PROCESSOR_AUTO_OFFSET_RESET: "smallest": must be earliest or latest`},
		{"bad guarantee", []string{"PROCESSOR_PROCESSING_GUARANTEE=exactly_once_v2"}, `PROCESSOR_PROCESSING_GUARANTEE: "exactly_once_v2"`},
		{"bad errors tolerance", []string{"PROCESSOR_ERRORS_TOLERANCE=false"}, `PROCESSOR_ERRORS_TOLERANCE: "false": must be all`},
		{"bad log level", []string{"PROCESSOR_LOG_LEVEL=loud"}, `PROCESSOR_LOG_LEVEL: "loud"`},
		{"negative test cost", []string{"PROCESSOR_TEST_COST_PER_RECORD=-1s"}, "PROCESSOR_TEST_COST_PER_RECORD: -1s: must not be negative"},
		{"sub-second transaction timeout", []string{"PROCESSOR_TRANSACTION_TIMEOUT=500ms", "PROCESSOR_BATCH_INTERVAL=100ms"}, "PROCESSOR_TRANSACTION_TIMEOUT: 500ms: must be whole milliseconds and at least 1s"},
		// What the producer owns is refused here, naming the variable, not when the client is created.
		{"producer's linger owned", []string{"PROCESSOR_PRODUCER_PROPERTIES=linger.ms=50"}, `PROCESSOR_PRODUCER_PROPERTIES: "linger.ms" cannot be set here`},
		{"alias of an owned property", []string{"PROCESSOR_KAFKA_PROPERTIES=metadata.broker.list=x:1"}, `PROCESSOR_KAFKA_PROPERTIES: "metadata.broker.list" cannot be set here: set PROCESSOR_BROKERS`},
		{"producer timeout in consumer properties", []string{"PROCESSOR_CONSUMER_PROPERTIES=message.timeout.ms=1000"}, `PROCESSOR_CONSUMER_PROPERTIES: "message.timeout.ms" cannot be set here: it is a producer property`},
		{"transaction timeout beyond the consumer's limit", []string{"PROCESSOR_TRANSACTION_TIMEOUT=13h"}, "PROCESSOR_TRANSACTION_TIMEOUT: 13h0m0s: too long"},
		{"http address", []string{"PROCESSOR_HTTP_ADDR=notanaddr"}, `PROCESSOR_HTTP_ADDR: "notanaddr": not host:port`},
		{"http port", []string{"PROCESSOR_HTTP_ADDR=:http"}, `PROCESSOR_HTTP_ADDR: ":http": port "http" is not a number`},
		{"pprof address", []string{"PROCESSOR_PPROF_ADDR=6060"}, `PROCESSOR_PPROF_ADDR: "6060": not host:port`},
		{"pprof on the probes' port", []string{"PROCESSOR_HTTP_ADDR=:9000", "PROCESSOR_PPROF_ADDR=:9000"}, `PROCESSOR_PPROF_ADDR: ":9000": the same address as PROCESSOR_HTTP_ADDR`},
		{"unknown librdkafka property", []string{"PROCESSOR_KAFKA_PROPERTIES=no.such.property=1"}, `PROCESSOR_KAFKA_PROPERTIES: No such configuration property: "no.such.property"`},
		{"librdkafka property out of range", []string{"PROCESSOR_CONSUMER_PROPERTIES=fetch.max.bytes=-5"}, `PROCESSOR_CONSUMER_PROPERTIES: Configuration property "fetch.max.bytes" value -5 is outside allowed range`},
		{"librdkafka property not in its enumeration", []string{"PROCESSOR_PRODUCER_PROPERTIES=compression.type=brotli"}, `PROCESSOR_PRODUCER_PROPERTIES: Invalid value "brotli" for configuration property "compression.codec"`},
		{"unknown property, java's", []string{"PROCESSOR_KAFKA_PROPERTIES=sasl.jaas.config=x required;"}, `PROCESSOR_KAFKA_PROPERTIES: Java JAAS configuration is not supported`},
		{"negative dedupe window", []string{"PROCESSOR_DEDUPE_WINDOW=-1h"}, "PROCESSOR_DEDUPE_WINDOW: -1h0m0s: must be positive"},
		{"negative dedupe entries", []string{"PROCESSOR_DEDUPE_MAX_ENTRIES=-5"}, "PROCESSOR_DEDUPE_MAX_ENTRIES: -5: must be at least 1"},
		{"rate not a number", []string{"PROCESSOR_BACKPRESSURE_INITIAL_RATE=NaN"}, "PROCESSOR_BACKPRESSURE_INITIAL_RATE: NaN: must be a number"},
		{"infinite rate", []string{"PROCESSOR_BACKPRESSURE_MAX_RATE_PER_PARTITION=+Inf"}, "PROCESSOR_BACKPRESSURE_MAX_RATE_PER_PARTITION: +Inf: must be a number"},
		{"brokers without a broker", []string{"PROCESSOR_BROKERS= , "}, "PROCESSOR_BROKERS: not set"},
		{"broker without a port", []string{"PROCESSOR_BROKERS=kafka-0:9092,kafka-1"}, `PROCESSOR_BROKERS: "kafka-1": not host:port`},
		{"output topic with a space", []string{"PROCESSOR_OUTPUT_TOPIC=out put"}, `PROCESSOR_OUTPUT_TOPIC: "out put": ' ' is not allowed in a topic name`},
		{"input topic too long", []string{"PROCESSOR_INPUT_TOPICS=" + strings.Repeat("t", 250)}, "249 in a topic name"},
		{"app id naming invalid topics", []string{"PROCESSOR_APP_ID=my/app#1"}, `PROCESSOR_APP_ID: "my/app#1": it names topics`},
		{"changelog name too long", []string{"PROCESSOR_DEDUPE_IDENTITY=key", "PROCESSOR_INPUT_TOPICS=" + strings.Repeat("t", 240)},
			`PROCESSOR_APP_ID: "eosproc": the de-duplication changelog of input`},
		{"regular-expression input", []string{"PROCESSOR_INPUT_TOPICS=^orders.*", "PROCESSOR_OUTPUT_TOPIC=orders-out"}, `PROCESSOR_INPUT_TOPICS: "^orders.*": regular-expression subscriptions are not supported`},
		{"route topic invalid", []string{"PROCESSOR_ROUTE_TOPICS=a b"}, `PROCESSOR_ROUTE_TOPICS: "a b"`},
		{"batch size beyond a whole number", []string{"PROCESSOR_MAX_BATCH_RECORDS=1000000000000"}, `PROCESSOR_MAX_BATCH_RECORDS="1000000000000": out of range: a whole number up to 2147483647`},
		// Accepted as a number, but the consumer's prefetch sized from it would leave librdkafka's range (exit 1).
		{"batch size beyond the cap", []string{"PROCESSOR_MAX_BATCH_RECORDS=2000000000"}, `PROCESSOR_MAX_BATCH_RECORDS: 2000000000: at most 1000000`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(with(minimal, tt.env...))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n%v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPropertiesParse(t *testing.T) {
	cfg, err := LoadConfig(with(minimal, "PROCESSOR_KAFKA_PROPERTIES= security.protocol=SASL_SSL ; sasl.mechanism=PLAIN;", "PROCESSOR_CONSUMER_PROPERTIES=fetch.max.bytes=1000"))
	if err != nil {
		t.Fatal(err)
	}
	want := Properties{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
	if !reflect.DeepEqual(cfg.KafkaProperties, want) {
		t.Errorf("properties = %v, want %v", cfg.KafkaProperties, want)
	}
	merged := clientProperties(cfg.KafkaProperties, cfg.ConsumerProperties)
	if merged["fetch.max.bytes"] != "1000" || merged["security.protocol"] != "SASL_SSL" {
		t.Errorf("consumer properties = %v, want shared and own merged", merged)
	}
}

func TestLoggedConfigRedactsSecrets(t *testing.T) {
	cfg, err := LoadConfig(with(minimal,
		"PROCESSOR_KAFKA_PROPERTIES=sasl.password=hunter2;sasl.username=bob;ssl.key.pem=PEMDATA;sasl.oauthbearer.client.secret=s3;ssl.keystore.password=k;client.rack=rack-1",
		`PROCESSOR_PRODUCER_PROPERTIES=ssl.key.password=pw-p`))
	if err != nil {
		t.Fatal(err)
	}
	logged := cfg.String()
	// librdkafka counts sasl.username as sensitive too.
	for _, secret := range []string{"hunter2", "bob", "PEMDATA", "s3", `"k"`, "pw-p"} {
		if strings.Contains(logged, secret) {
			t.Errorf("logged config contains secret %q: %s", secret, logged)
		}
	}
	if !strings.Contains(logged, `"client.rack":"rack-1"`) {
		t.Errorf("logged config lost a non-secret property: %s", logged)
	}
}

func TestUsageListsEveryVariableWithDefault(t *testing.T) {
	var b bytes.Buffer
	PrintUsage(&b)
	for _, f := range fields() {
		line := ""
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, EnvPrefix+f.key+" ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("usage does not list %s%s", EnvPrefix, f.key)
			continue
		}
		if f.help == "" || !strings.Contains(line, f.help) {
			t.Errorf("%s%s has no meaning in usage", EnvPrefix, f.key)
		}
		if f.def != "" && !strings.Contains(line, f.def) {
			t.Errorf("usage line for %s%s lacks its default %q", EnvPrefix, f.key, f.def)
		}
	}
}

// A Config built in Go with only the three required fields is the binary's configuration with only their three
// variables set: every other field, backpressure's true included, gets the same default.
func TestGoConfigWithTheRequiredFieldsIsTheBinarysDefaultConfig(t *testing.T) {
	fromEnv, err := LoadConfig([]string{"PROCESSOR_BROKERS=b:9092", "PROCESSOR_INPUT_TOPICS=in", "PROCESSOR_OUTPUT_TOPIC=out"})
	if err != nil {
		t.Fatal(err)
	}
	if err := fromEnv.resolve(); err != nil {
		t.Fatal(err)
	}
	inGo := Config{Brokers: "b:9092", InputTopics: []string{"in"}, OutputTopic: "out"}
	if err := inGo.resolve(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inGo, fromEnv) {
		t.Errorf("a Config built in Go differs from the binary's:\n  Go:  %s\n  env: %s", inGo, fromEnv)
	}
	if inGo.Backpressure == nil || !*inGo.Backpressure || inGo.BatchInterval != 500*time.Millisecond ||
		inGo.BatchRecords != consume.DefaultBatchRecords || inGo.MaxBatchRecords != consume.DefaultMaxBatchRecords ||
		inGo.DeadLetterTopic != "eosproc-dlq" {
		t.Errorf("defaults not applied: %s", inGo)
	}
}

// with returns base with the given KEY=VALUE entries replacing those of the same key, or added.
func with(base []string, kvs ...string) []string {
	out := []string{}
	replaced := map[string]bool{}
	for _, kv := range kvs {
		k, _, _ := strings.Cut(kv, "=")
		replaced[k] = true
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !replaced[k] {
			out = append(out, kv)
		}
	}
	return append(out, kvs...)
}

func TestStaticMembershipSetsTheGroupInstanceID(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want string
	}{
		{env: "PROCESSOR_STATIC_MEMBERSHIP=true", want: "p-0"},
		{env: "PROCESSOR_STATIC_MEMBERSHIP=false", want: ""},
	} {
		cfg, err := LoadConfig(append(minimal, tt.env))
		if err != nil {
			t.Fatal(err)
		}
		if got := groupInstanceID(cfg); got != tt.want {
			t.Errorf("%s: group.instance.id %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestEveryProblemIsReportedOnceAndAtOnce(t *testing.T) {
	_, err := LoadConfig(with(minimal, "PROCESSOR_KAFKA_PROPERTIES=linger.ms", "PROCESSOR_MAX_BATCH_RECORDS=1000000000000000000000",
		"PROCESSOR_HTTP_ADDR=notanaddr", "PROCESSOR_OUTPUT_TOPIC=out put"))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConfigError", err)
	}
	for _, want := range []string{"PROCESSOR_KAFKA_PROPERTIES=", "PROCESSOR_MAX_BATCH_RECORDS=", "PROCESSOR_HTTP_ADDR:", "PROCESSOR_OUTPUT_TOPIC:"} {
		n := 0
		for _, p := range ce.Problems {
			if strings.HasPrefix(p, want) || strings.HasPrefix(p, strings.TrimSuffix(strings.TrimSuffix(want, "="), ":")+":") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d problems about %s, want exactly 1:\n%v", n, want, err)
		}
	}
}

func TestTLSFilesWithoutATLSProtocolAreRefused(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(with(minimal, "PROCESSOR_TLS_CA_FILE="+ca))
	if err == nil || !strings.Contains(err.Error(), `PROCESSOR_TLS_CA_FILE: is set but PROCESSOR_SECURITY_PROTOCOL is "plaintext"`) {
		t.Errorf("err = %v, want the CA file refused without a TLS protocol", err)
	}
	if _, err := LoadConfig(with(minimal, "PROCESSOR_TLS_CA_FILE="+ca, "PROCESSOR_SECURITY_PROTOCOL=ssl")); err != nil {
		t.Errorf("with ssl: %v", err)
	}
}

func TestAnOAuthBearerConfigIsNotLogged(t *testing.T) {
	cfg, err := LoadConfig(with(minimal, "PROCESSOR_KAFKA_PROPERTIES=sasl.oauthbearer.config=principal=x clientPw=hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cfg.LogValue())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hunter2") {
		t.Errorf("logged configuration shows the OAUTHBEARER secret: %s", b)
	}
}
