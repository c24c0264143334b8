package processor

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Shortened from librdkafka 2.11's statistics of a transactional producer and of a consumer of two partitions.
const (
	producerStats = `{"name":"rdkafka#producer-1","type":"producer","msg_cnt":1200,"msg_size":150000,
		"brokers":{
			"localhost:9092/1":{"name":"localhost:9092/1","nodeid":1,"source":"learned","rtt":{"cnt":40,"p50":2000,"p99":35000}},
			"localhost:9092/2":{"name":"localhost:9092/2","nodeid":2,"source":"learned","rtt":{"cnt":0,"p50":0,"p99":0}},
			"GroupCoordinator":{"name":"GroupCoordinator","nodeid":1,"source":"logical","rtt":{"cnt":3,"p50":100,"p99":100}},
			":0/internal":{"name":":0/internal","nodeid":-1,"source":"internal","rtt":{"cnt":0}}},
		"topics":{},"eos":{"idemp_state":"Assigned","txn_state":"InTransaction"}}`
	consumerStats = `{"name":"rdkafka#consumer-2","type":"consumer","msg_cnt":0,"msg_size":0,
		"brokers":{"localhost:9092/1":{"name":"localhost:9092/1","nodeid":1,"source":"learned","rtt":{"cnt":12,"p50":101000,"p99":102000}}},
		"topics":{"in":{"partitions":{
			"0":{"fetchq_cnt":5000,"fetchq_size":600000},
			"1":{"fetchq_cnt":5000,"fetchq_size":600000},
			"-1":{"fetchq_cnt":0,"fetchq_size":0}}}},
		"eos":{"idemp_state":"Init","txn_state":"Init"}}`
)

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func TestClientMetricsFromLibrdkafkaStatistics(t *testing.T) {
	m := newClientMetrics(prometheus.NewRegistry(), slog.Default())
	m.observe([]byte(producerStats))
	m.observe([]byte(consumerStats))

	for _, tt := range []struct {
		name string
		g    prometheus.Gauge
		want float64
	}{
		{"producer p99 to broker 1", m.rtt.WithLabelValues("producer", "localhost:9092/1", "0.99"), 0.035},
		{"producer p50 to broker 1", m.rtt.WithLabelValues("producer", "localhost:9092/1", "0.5"), 0.002},
		{"consumer p99 to broker 1", m.rtt.WithLabelValues("consumer", "localhost:9092/1", "0.99"), 0.102},
		{"producer queue", m.producerQueue, 1200},
		{"producer queue bytes", m.producerQueueBytes, 150000},
		// Both partitions report the consumer's one queue: not added up.
		{"fetch queue", m.fetchQueue, 5000},
		{"fetch queue bytes", m.fetchQueueBytes, 600000},
		{"state InTransaction", m.txnState.WithLabelValues("InTransaction"), 1},
		// The consumer's statistics (state Init: it is not transactional) leave the producer's state alone.
		{"state Ready", m.txnState.WithLabelValues("Ready"), 0},
		{"state Init", m.txnState.WithLabelValues("Init"), 0},
	} {
		if got := gauge(t, tt.g); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
		}
	}
	// Two quantiles for each client's broker 1; none for a broker without requests, a logical or the internal one.
	if n := testCollect(t, m.rtt); n != 4 {
		t.Errorf("%d round-trip series, want 4", n)
	}

	// A broker gone from the next statistics loses its series; the state moves.
	m.observe([]byte(strings.Replace(strings.Replace(producerStats, `"cnt":40`, `"cnt":0`, 1), "InTransaction", "Ready", 1)))
	if n := testCollect(t, m.rtt); n != 2 {
		t.Errorf("%d round-trip series after the producer's broker went quiet, want only the consumer's", n)
	}
	if gauge(t, m.txnState.WithLabelValues("InTransaction")) != 0 || gauge(t, m.txnState.WithLabelValues("Ready")) != 1 {
		t.Errorf("transaction state did not move from InTransaction to Ready")
	}

	// A second transactional producer: the queues add up, and each state counts its producers.
	m.observe([]byte(strings.Replace(strings.Replace(producerStats, "producer-1", "producer-3", 1), `"msg_cnt":1200`, `"msg_cnt":300`, 1)))
	if got := gauge(t, m.producerQueue); got != 1500 {
		t.Errorf("producer queue with two producers = %v, want 1200 + 300", got)
	}
	if gauge(t, m.txnState.WithLabelValues("InTransaction")) != 1 || gauge(t, m.txnState.WithLabelValues("Ready")) != 1 {
		t.Errorf("states of two producers, one Ready and one InTransaction: Ready %v, InTransaction %v",
			gauge(t, m.txnState.WithLabelValues("Ready")), gauge(t, m.txnState.WithLabelValues("InTransaction")))
	}
}

func TestClientMetricsIgnoreAnUnreadableDocument(t *testing.T) {
	m := newClientMetrics(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	m.observe([]byte(producerStats))
	m.observe([]byte(`{"type":"producer","msg_cnt":"many"`))
	if got := gauge(t, m.producerQueue); got != 1200 {
		t.Errorf("producer queue = %v after an unreadable document, want the last good figure 1200", got)
	}
}

// testCollect counts the series a collector has.
func testCollect(t *testing.T, c prometheus.Collector) int {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}
