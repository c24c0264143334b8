package processor

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// clientMetrics are what librdkafka's statistics (statistics.interval.ms) say about the consumer and the
// producers, as gauges: request round trips per broker, the producers' queues, the consumer's prefetched
// records and the producers' transaction states. Each gauge without a broker label exists from start-up.
type clientMetrics struct {
	rtt                               *prometheus.GaugeVec // client, broker, quantile
	producerQueue, producerQueueBytes prometheus.Gauge
	fetchQueue, fetchQueueBytes       prometheus.Gauge
	txnState                          *prometheus.GaugeVec // state
	log                               *slog.Logger

	// producers holds each producer's latest figures, by librdkafka client name: with two transactional
	// producers (PROCESSOR_TRANSACTIONAL_PRODUCERS) the gauges add them up. Statistics arrive on each client's
	// own goroutine.
	mu        sync.Mutex
	producers map[string]producerFigures
}

// producerFigures are one producer's latest queue and transaction state.
type producerFigures struct {
	msgs, bytes int64
	txnState    string
}

// txnStates are librdkafka's transaction states (rd_kafka_txn_state2str in 2.11), each a series from start-up.
var txnStates = []string{"Init", "WaitPID", "ReadyNotAcked", "Ready", "InTransaction", "BeginCommit",
	"CommittingTransaction", "CommitNotAcked", "BeginAbort", "AbortingTransaction", "AbortedNotAcked",
	"AbortableError", "FatalError"}

func newClientMetrics(reg prometheus.Registerer, log *slog.Logger) *clientMetrics {
	m := &clientMetrics{
		rtt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eosproc_kafka_request_rtt_seconds",
			Help: "Round trip of the client's requests to each broker over the last statistics interval, by quantile (the consumer's are mostly fetches, the producer's produce requests).",
		}, []string{"client", "broker", "quantile"}),
		producerQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_kafka_producer_queue_messages", Help: "Records in the producer's queues, not yet acknowledged by the brokers.",
		}),
		producerQueueBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_kafka_producer_queue_bytes", Help: "Bytes of the records in the producer's queues.",
		}),
		fetchQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_kafka_fetch_queue_messages", Help: "Records fetched ahead and waiting in the consumer's queue for a batch.",
		}),
		fetchQueueBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_kafka_fetch_queue_bytes", Help: "Bytes of the records fetched ahead and waiting in the consumer's queue.",
		}),
		txnState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eosproc_kafka_transaction_state", Help: "Producers in each of librdkafka's transaction states: 1 for the producer's current state with one transactional producer, with two each counts in its own.",
		}, []string{"state"}),
		log:       log,
		producers: map[string]producerFigures{},
	}
	for _, s := range txnStates {
		m.txnState.WithLabelValues(s)
	}
	reg.MustRegister(m.rtt, m.producerQueue, m.producerQueueBytes, m.fetchQueue, m.fetchQueueBytes, m.txnState)
	return m
}

// rdStats is the part of librdkafka's statistics document (STATISTICS.md) the gauges come from.
type rdStats struct {
	Name    string `json:"name"` // the client's, unique in the process
	Type    string `json:"type"` // "producer" or "consumer"
	MsgCnt  int64  `json:"msg_cnt"`
	MsgSize int64  `json:"msg_size"`
	Brokers map[string]struct {
		Name   string `json:"name"`
		Source string `json:"source"` // "learned", "configured"; "internal" and "logical" are not brokers
		RTT    struct {
			Cnt int64 `json:"cnt"`
			P50 int64 `json:"p50"` // microseconds
			P99 int64 `json:"p99"`
		} `json:"rtt"`
	} `json:"brokers"`
	Topics map[string]struct {
		Partitions map[string]struct {
			FetchqCnt  int64 `json:"fetchq_cnt"`
			FetchqSize int64 `json:"fetchq_size"`
		} `json:"partitions"`
	} `json:"topics"`
	EOS struct {
		TxnState string `json:"txn_state"`
	} `json:"eos"`
}

// observe updates the gauges from one statistics document of the consumer or the producer.
func (m *clientMetrics) observe(doc []byte) {
	var s rdStats
	if err := json.Unmarshal(doc, &s); err != nil {
		m.log.Warn("librdkafka statistics not understood; client metrics not updated", "error", err)
		return
	}
	// Brokers that left the cluster must not keep their last figures.
	m.rtt.DeletePartialMatch(prometheus.Labels{"client": s.Type})
	for _, b := range s.Brokers {
		if b.Source == "internal" || b.Source == "logical" || b.RTT.Cnt == 0 {
			continue // no requests in the interval: no round trip to report
		}
		m.rtt.WithLabelValues(s.Type, b.Name, "0.5").Set(float64(b.RTT.P50) / 1e6)
		m.rtt.WithLabelValues(s.Type, b.Name, "0.99").Set(float64(b.RTT.P99) / 1e6)
	}
	switch s.Type {
	case "producer":
		m.observeProducer(s.Name, producerFigures{msgs: s.MsgCnt, bytes: s.MsgSize, txnState: s.EOS.TxnState})
	case "consumer":
		// Every partition's fetch queue forwards to the consumer's one queue, and librdkafka reports each
		// partition's as the length of the queue it forwards to: the largest is the consumer's queue.
		var cnt, size int64
		for _, t := range s.Topics {
			for id, p := range t.Partitions {
				if n, err := strconv.Atoi(id); err != nil || n < 0 {
					continue // the unassigned partition, -1
				}
				cnt, size = max(cnt, p.FetchqCnt), max(size, p.FetchqSize)
			}
		}
		m.fetchQueue.Set(float64(cnt))
		m.fetchQueueBytes.Set(float64(size))
	}
}

// observeProducer records one producer's figures and sets the producer gauges to what all of them add up to.
func (m *clientMetrics) observeProducer(name string, f producerFigures) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.producers[name] = f
	var msgs, bytes int64
	inState := map[string]int{}
	for _, p := range m.producers {
		msgs, bytes = msgs+p.msgs, bytes+p.bytes
		if p.txnState != "" {
			inState[p.txnState]++
		}
	}
	m.producerQueue.Set(float64(msgs))
	m.producerQueueBytes.Set(float64(bytes))
	if len(inState) == 0 {
		return // not transactional
	}
	for _, state := range txnStates {
		m.txnState.WithLabelValues(state).Set(float64(inState[state]))
	}
	for state, n := range inState {
		if !slices.Contains(txnStates, state) {
			m.txnState.WithLabelValues(state).Set(float64(n)) // a state librdkafka added since
		}
	}
}
