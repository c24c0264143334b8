package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// mib is the MB of every MB/s figure: Kafka's tools divide by 2^20 and the processor's figures must compare.
const mib = 1 << 20

// Ceiling is one measurement of what the broker allows without the processor.
type Ceiling struct {
	Workload      string  `json:"workload"`
	Tool          string  `json:"tool"`
	Records       int     `json:"records"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	Note          string  `json:"note,omitempty"`
}

// Tool names, as the report and the ratios refer to them.
const (
	toolJavaProduce = "Java ProducerPerformance"
	toolJavaConsume = "Java ConsumerPerformance"
	toolGoConsume   = "librdkafka consume"
	toolGoCopy      = "librdkafka copy (consume+produce)"
)

// preload creates the workload's topic and writes its backlog with ProducerPerformance.
func (b *bench) preload(ctx context.Context, w workload) error {
	_, err := b.preloadOutput(ctx, w)
	return err
}

// preloadOutput is preload, returning ProducerPerformance's output.
func (b *bench) preloadOutput(ctx context.Context, w workload) (string, error) {
	if err := b.cluster.CreateTopic(ctx, w.topic, partitions, 1, nil); err != nil {
		return "", err
	}
	step("%s: pre-loading %d records with ProducerPerformance", w.name, w.records)
	// acks=all and idempotence as the processor's producer; linger and batch size as librdkafka's, whose
	// batches are up to 1 MB, rather than the Java client's 16 KB, which would understate the ceiling.
	return b.kafkaTool(ctx, "org.apache.kafka.tools.ProducerPerformance",
		"--topic", w.topic, "--num-records", strconv.Itoa(w.records), "--record-size", strconv.Itoa(w.size),
		"--throughput", "-1", "--producer-props", "bootstrap.servers="+b.cluster.InternalBootstrapServers(), "acks=all",
		"enable.idempotence=true", "linger.ms=10", "batch.size=1048576")
}

// kafkaTool runs one of Kafka's own tools inside the broker's container. The tools reach the broker on its
// INTERNAL listener: the EXTERNAL one advertises the host's port, which inside the container is nobody's.
func (b *bench) kafkaTool(ctx context.Context, class string, args ...string) (string, error) {
	cmd := append([]string{"/opt/kafka/bin/kafka-run-class.sh", class}, args...)
	code, out, err := b.cluster.Exec(ctx, 1, cmd)
	if err != nil {
		return "", err
	}
	if code != 0 {
		return "", fmt.Errorf("%s exited %d:\n%s", class, code, out)
	}
	return out, nil
}

// ceilings writes the workload's backlog with ProducerPerformance (timed: the broker's produce ceiling), then
// reads it back with ConsumerPerformance, with a plain librdkafka consumer, and copies it with a plain
// librdkafka consumer and producer.
func (b *bench) ceilings(ctx context.Context, w workload) error {
	out, err := b.preloadOutput(ctx, w)
	if err != nil {
		return err
	}
	internal := b.cluster.InternalBootstrapServers()
	m := regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)`).FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return fmt.Errorf("ProducerPerformance: no summary line in:\n%s", out)
	}
	last := m[len(m)-1]
	b.addCeiling(Ceiling{Workload: w.name, Tool: toolJavaProduce, Records: atoi(last[1]), RecordsPerSec: atof(last[2]),
		MBPerSec: atof(last[3]), Note: "acks=all, idempotent, linger.ms=10, batch.size=1 MiB; in the broker's container"})

	step("%s: ConsumerPerformance", w.name)
	out, err = b.kafkaTool(ctx, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", internal,
		"--topic", w.topic, "--num-records", strconv.Itoa(w.records), "--timeout", "60000", "--hide-header")
	if err != nil {
		return err
	}
	// start.time, end.time, MB, MB/s, records, records/s, rebalance ms, fetch ms, fetch MB/s, fetch records/s
	var fields []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Split(line, ", "); len(f) >= 10 {
			fields = f
		}
	}
	if fields == nil {
		return fmt.Errorf("ConsumerPerformance: no result line in:\n%s", out)
	}
	b.addCeiling(Ceiling{Workload: w.name, Tool: toolJavaConsume, Records: atoi(fields[4]), RecordsPerSec: atof(fields[9]),
		MBPerSec: atof(fields[8]), Note: "fetch rate, group join excluded; in the broker's container"})

	step("%s: librdkafka consume and copy", w.name)
	c, err := b.goCopy(ctx, w, false)
	if err != nil {
		return err
	}
	b.addCeiling(c)
	if c, err = b.goCopy(ctx, w, true); err != nil {
		return err
	}
	b.addCeiling(c)
	return nil
}

func (b *bench) addCeiling(c Ceiling) {
	step("  %-36s %9.0f records/s %7.1f MB/s", c.Tool, c.RecordsPerSec, c.MBPerSec)
	b.res.Ceilings = append(b.res.Ceilings, c)
}

// goCopy reads the whole backlog with a plain librdkafka consumer on the host (the processor's client library
// and placement, its consumer settings, read_committed) and, when produce is set, writes every record to a fresh
// topic with an idempotent acks=all producer, one Produce call per record as the processor did before its batch
// client, without transactions, transforms or batches: what a copy job costs the client and the broker before
// any guarantee.
func (b *bench) goCopy(ctx context.Context, w workload, produce bool) (Ceiling, error) {
	cons, err := ceilingConsumer(b.cluster.BootstrapServers(), w.topic)
	if err != nil {
		return Ceiling{}, err
	}
	defer cons.Close()
	var prod *kafka.Producer
	var delivered atomic.Int64
	out := b.nextName("bench-ceiling-out")
	if produce {
		if err := b.cluster.CreateTopic(ctx, out, partitions, 1, nil); err != nil {
			return Ceiling{}, err
		}
		defer b.dropTopics(out)
		if prod, err = ceilingProducer(b.cluster.BootstrapServers(), &delivered); err != nil {
			return Ceiling{}, err
		}
		defer prod.Close()
	}

	start := time.Now()
	read := 0
	msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &out, Partition: kafka.PartitionAny}}
	for read < w.records {
		if ctx.Err() != nil {
			return Ceiling{}, ctx.Err()
		}
		m, ok := cons.Poll(100).(*kafka.Message)
		if !ok || m.TopicPartition.Error != nil {
			continue
		}
		read++
		if !produce {
			continue
		}
		msg.Key, msg.Value, msg.Timestamp = m.Key, m.Value, m.Timestamp
		for {
			err := prod.Produce(msg, nil)
			if err == nil {
				break
			}
			if ke, ok := err.(kafka.Error); !ok || ke.Code() != kafka.ErrQueueFull {
				return Ceiling{}, fmt.Errorf("copy ceiling: produce: %w", err)
			}
			prod.Flush(10)
		}
	}
	tool := toolGoConsume
	if produce {
		tool = toolGoCopy
		for delivered.Load() < int64(w.records) {
			if ctx.Err() != nil {
				return Ceiling{}, ctx.Err()
			}
			prod.Flush(100)
		}
	}
	took := time.Since(start).Seconds()
	return Ceiling{Workload: w.name, Tool: tool, Records: w.records, RecordsPerSec: float64(w.records) / took,
		MBPerSec: float64(w.records) * float64(w.size) / took / mib,
		Note:     "Go client on the host, read_committed; copy: idempotent acks=all, linger.ms=10, no transactions"}, nil
}

// ceilingConsumer reads every partition of topic from the beginning, read_committed, with the prefetch the
// processor's consumer is compared with.
func ceilingConsumer(bootstrap, topic string) (*kafka.Consumer, error) {
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "group.id": "bench-ceiling", "isolation.level": "read_committed",
		"enable.auto.commit": false, "fetch.wait.max.ms": 100, "queued.max.messages.kbytes": 65536,
		"fetch.max.bytes": 16777216, "max.partition.fetch.bytes": 1048576, "log_level": 3,
	})
	if err != nil {
		return nil, err
	}
	var assignment []kafka.TopicPartition
	for p := range partitions {
		assignment = append(assignment, kafka.TopicPartition{Topic: &topic, Partition: int32(p), Offset: kafka.OffsetBeginning})
	}
	if err := cons.Assign(assignment); err != nil {
		cons.Close()
		return nil, err
	}
	return cons, nil
}

// ceilingProducer is an idempotent producer without transactions that counts its successful deliveries.
func ceilingProducer(bootstrap string, delivered *atomic.Int64) (*kafka.Producer, error) {
	prod, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "enable.idempotence": true, "acks": "all", "linger.ms": 10,
		"go.delivery.report.fields": "none", "log_level": 3,
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for ev := range prod.Events() {
			if m, ok := ev.(*kafka.Message); ok && m.TopicPartition.Error == nil {
				delivered.Add(1)
			}
		}
	}()
	return prod, nil
}

func (b *bench) nextName(prefix string) string {
	b.seq++
	return prefix + "-" + strconv.Itoa(b.seq)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

func atof(s string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f
}
