package dedupe

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/rdkafka"
)

// KafkaRestorer reads changelog partitions with read_committed: only what committed transactions wrote, which is
// exactly the state that goes with the committed input offsets.
type KafkaRestorer struct {
	// Config is the client configuration (bootstrap servers, TLS, SASL); the restorer adds what it needs.
	Config kafka.ConfigMap
	// Log receives librdkafka's log lines of the restore clients; nil means slog.Default().
	Log *slog.Logger
}

// Restore reads topic[partition] from its beginning to its last stable offset.
func (r *KafkaRestorer) Restore(ctx context.Context, topic string, partition int32, apply func(key, value []byte) error) (int, error) {
	cfg := kafka.ConfigMap{}
	for k, v := range r.Config {
		cfg[k] = v
	}
	cfg["group.id"] = "eosproc-dedupe-restore" // required by librdkafka; no group is joined, nothing committed
	cfg["isolation.level"] = "read_committed"
	cfg["enable.auto.commit"] = false
	cfg["enable.partition.eof"] = true
	rdkafka.ForwardLogs(cfg)
	c, err := kafka.NewConsumer(&cfg)
	if err != nil {
		return 0, fmt.Errorf("create restore consumer: %w", err)
	}
	defer c.Close()
	rdkafka.Forward(cmp.Or(r.Log, slog.Default()).With("component", "dedupe-restore"), c.Logs())
	if err := growIfNeeded(ctx, c, topic, partition); err != nil {
		return 0, err
	}
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: partition, Offset: kafka.OffsetBeginning}}); err != nil {
		return 0, fmt.Errorf("assign %s[%d]: %w", topic, partition, err)
	}
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				return n, fmt.Errorf("read %s: %w", e.TopicPartition, e.TopicPartition.Error)
			}
			if err := apply(e.Key, e.Value); err != nil {
				return n, fmt.Errorf("apply %s@%d: %w", topic, e.TopicPartition.Offset, err)
			}
			n++
		case kafka.PartitionEOF:
			// Under read_committed the end is the last stable offset. Our own transactions are settled (we
			// fenced our predecessor at start) and so are the previous owner's (the group hands a partition over
			// only once its pending offsets are settled), so nothing committed can come after it.
			return n, nil
		case kafka.Error:
			if e.IsFatal() {
				return n, fmt.Errorf("restore %s[%d]: %w", topic, partition, e)
			}
		}
	}
}

// ChangelogConfig is the configuration of a changelog topic. Compaction keeps the last change of each identity,
// but Kafka never compacts a partition's active segment, and by default rolls it only weekly or at 1 GB and
// cleans a partition only when half of it is stale: a restore would read many times the live entries. Rolling
// every 10 minutes and cleaning at 10% stale keep a partition near its live entries plus 10 minutes of changes.
var ChangelogConfig = map[string]string{
	"cleanup.policy":            "compact",
	"segment.ms":                "600000",
	"min.cleanable.dirty.ratio": "0.1",
}

// EnsureChangelogs creates the changelog topic of every input topic when missing, with ChangelogConfig and as
// many partitions as its input, and checks existing ones: a changelog with another partition count would pair
// input partitions with the wrong state, so it is an error that names both topics. Existing changelogs get
// ChangelogConfig too (a changelog made by an older version has Kafka's defaults); where the brokers refuse that
// (no AlterConfigs permission), the refusal is returned as notApplied and the processor goes on.
func EnsureChangelogs(ctx context.Context, admin *kafka.AdminClient, inputs []string, changelogOf func(string) string) (notApplied error, err error) {
	md, err := admin.GetMetadata(nil, true, 10000)
	if err != nil {
		return nil, fmt.Errorf("de-duplication changelogs: read metadata: %w", err)
	}
	var missing []kafka.TopicSpecification
	var existing []kafka.ConfigResource
	for _, input := range inputs {
		in, ok := md.Topics[input]
		if !ok || in.Error.Code() != kafka.ErrNoError {
			return nil, fmt.Errorf("de-duplication changelogs: input topic %q not found", input)
		}
		name := changelogOf(input)
		cl, exists := md.Topics[name]
		switch {
		case !exists || cl.Error.Code() == kafka.ErrUnknownTopicOrPart:
			missing = append(missing, kafka.TopicSpecification{
				Topic: name, NumPartitions: len(in.Partitions), ReplicationFactor: -1, Config: ChangelogConfig,
			})
		case len(cl.Partitions) != len(in.Partitions):
			return nil, fmt.Errorf("de-duplication changelog %q has %d partitions but input topic %q has %d: they must match "+
				"(grow the changelog with kafka-topics --alter --partitions %d, or delete it to start the state afresh)",
				name, len(cl.Partitions), input, len(in.Partitions), len(in.Partitions))
		default:
			r := kafka.ConfigResource{Type: kafka.ResourceTopic, Name: name}
			for k, v := range ChangelogConfig {
				r.Config = append(r.Config, kafka.ConfigEntry{Name: k, Value: v, IncrementalOperation: kafka.AlterConfigOpTypeSet})
			}
			existing = append(existing, r)
		}
	}
	if len(missing) > 0 {
		res, err := admin.CreateTopics(ctx, missing, kafka.SetAdminOperationTimeout(30*time.Second))
		if err != nil {
			return nil, fmt.Errorf("create de-duplication changelogs: %w", err)
		}
		for _, r := range res {
			if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
				return nil, fmt.Errorf("create de-duplication changelog %q: %w", r.Topic, r.Error)
			}
		}
	}
	if len(existing) == 0 {
		return nil, nil
	}
	res, err := admin.IncrementalAlterConfigs(ctx, existing, kafka.SetAdminRequestTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("configure existing de-duplication changelogs: %w", err), nil
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			return fmt.Errorf("configure de-duplication changelog %q: %w", r.Name, r.Error), nil
		}
	}
	return nil, nil
}

// growIfNeeded adds partitions to the changelog when its input topic grew while running: the new input partition
// is assigned before anyone made its changelog partition. (At start-up EnsureChangelogs insists on equal counts.)
func growIfNeeded(ctx context.Context, c *kafka.Consumer, topic string, partition int32) error {
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		return fmt.Errorf("metadata of changelog %q: %w", topic, err)
	}
	if tm, ok := md.Topics[topic]; ok && int(partition) < len(tm.Partitions) {
		return nil
	}
	admin, err := kafka.NewAdminClientFromConsumer(c)
	if err != nil {
		return fmt.Errorf("grow changelog %q: %w", topic, err)
	}
	defer admin.Close()
	return growChangelog(ctx, admin, topic, int(partition)+1)
}

// growChangelog gives changelog at least partitions partitions.
func growChangelog(ctx context.Context, admin *kafka.AdminClient, changelog string, partitions int) error {
	res, err := admin.CreatePartitions(ctx, []kafka.PartitionsSpecification{{Topic: changelog, IncreaseTo: partitions}},
		kafka.SetAdminOperationTimeout(30*time.Second))
	if err == nil && res[0].Error.Code() != kafka.ErrNoError && res[0].Error.Code() != kafka.ErrInvalidPartitions {
		err = res[0].Error
	}
	if err != nil {
		return fmt.Errorf("grow de-duplication changelog %q to %d partitions: %w", changelog, partitions, err)
	}
	return nil
}
