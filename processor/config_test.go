package processor

import (
	"bytes"
	"errors"
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
		MaxBatchRecords: consume.DefaultMaxBatchRecords, TransactionTimeout: time.Minute, DeadLetterTopic: "eosproc-dlq",
		AutoOffsetReset: "earliest", ProcessingGuarantee: "exactly_once", HTTPAddr: ":8080",
		ShutdownTimeout: 30 * time.Second, LogLevel: "info", Backpressure: true, BackpressureMinRate: 1,
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
	if cfg.Backpressure {
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
		{"bad log level", []string{"PROCESSOR_LOG_LEVEL=loud"}, `PROCESSOR_LOG_LEVEL: "loud"`},
		{"negative test cost", []string{"PROCESSOR_TEST_COST_PER_RECORD=-1s"}, "PROCESSOR_TEST_COST_PER_RECORD: -1s: must not be negative"},
		{"sub-second transaction timeout", []string{"PROCESSOR_TRANSACTION_TIMEOUT=500ms", "PROCESSOR_BATCH_INTERVAL=100ms"}, "PROCESSOR_TRANSACTION_TIMEOUT: 500ms: must be whole milliseconds and at least 1s"},
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
		"PROCESSOR_KAFKA_PROPERTIES=sasl.password=hunter2;sasl.username=bob;ssl.key.pem=PEMDATA;sasl.oauthbearer.client.secret=s3;ssl.keystore.password=k",
		`PROCESSOR_PRODUCER_PROPERTIES=sasl.jaas.config=org.x required password="p"`))
	if err != nil {
		t.Fatal(err)
	}
	logged := cfg.String()
	for _, secret := range []string{"hunter2", "PEMDATA", "s3", `"k"`, `password=\"p\"`} {
		if strings.Contains(logged, secret) {
			t.Errorf("logged config contains secret %q: %s", secret, logged)
		}
	}
	if !strings.Contains(logged, `"sasl.username":"bob"`) {
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

func TestZeroConfigFieldsGetDefaultsInRun(t *testing.T) {
	cfg := Config{Brokers: "b:9092", InputTopics: []string{"in"}, OutputTopic: "out", InstanceID: "x"}
	if err := cfg.resolve(); err != nil {
		t.Fatal(err)
	}
	if cfg.BatchInterval != 500*time.Millisecond || cfg.MaxBatchRecords != consume.DefaultMaxBatchRecords || cfg.DeadLetterTopic != "eosproc-dlq" {
		t.Errorf("zero fields not defaulted: %+v", cfg)
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
