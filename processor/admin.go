package processor

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/rdkafka"
)

// adminConfig is the configuration of the processor's short-lived admin clients: the brokers, security and
// pass-through properties the consumer gets.
func (c Config) adminConfig() kafka.ConfigMap {
	cfg := kafka.ConfigMap{"bootstrap.servers": c.Brokers}
	for k, v := range clientProperties(c.securityProperties(), c.KafkaProperties, c.ConsumerProperties) {
		cfg[k] = v
	}
	return cfg
}

// newAdmin makes an admin client whose librdkafka log lines go to log as component. A standalone admin client has
// no log channel, so it is made from a consumer that has one; the consumer never subscribes, so no group is
// joined. close closes both.
func newAdmin(cfg kafka.ConfigMap, groupID, component string, log *slog.Logger) (admin *kafka.AdminClient, close func(), err error) {
	handleCfg := maps.Clone(cfg)
	handleCfg["group.id"] = groupID
	rdkafka.ForwardLogs(handleCfg)
	handle, err := kafka.NewConsumer(&handleCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: create admin client: %w", component, err)
	}
	rdkafka.Forward(log.With("component", component), handle.Logs())
	admin, err = kafka.NewAdminClientFromConsumer(handle)
	if err != nil {
		handle.Close()
		return nil, nil, fmt.Errorf("%s: create admin client: %w", component, err)
	}
	return admin, func() { admin.Close(); handle.Close() }, nil
}

// topicLimits reads max.message.bytes of the topics that exist among topics: the largest record batch their
// brokers accept. A topic that does not exist yet is left out (it gets the broker's default when created).
func topicLimits(ctx context.Context, admin *kafka.AdminClient, topics []string) (map[string]int, error) {
	resources := make([]kafka.ConfigResource, 0, len(topics))
	for _, t := range topics {
		resources = append(resources, kafka.ConfigResource{Type: kafka.ResourceTopic, Name: t})
	}
	res, err := admin.DescribeConfigs(ctx, resources)
	if err != nil {
		return nil, fmt.Errorf("describe topics' max.message.bytes: %w", err)
	}
	limits := map[string]int{}
	for _, r := range res {
		switch r.Error.Code() {
		case kafka.ErrNoError:
		case kafka.ErrUnknownTopicOrPart:
			continue
		default:
			return nil, fmt.Errorf("describe topic %q: %w", r.Name, r.Error)
		}
		entry, ok := r.Config["max.message.bytes"]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(entry.Value)
		if err != nil {
			return nil, fmt.Errorf("topic %q: max.message.bytes %q: %w", r.Name, entry.Value, err)
		}
		limits[r.Name] = n
	}
	return limits, nil
}

// defaultBatchBytes is librdkafka's default batch.size: the most bytes it puts in one record batch.
const defaultBatchBytes = 1_000_000

// outputLimits reads max.message.bytes of the topics the processor writes (output, dead letters, routes). A
// broker refuses a whole record batch above its topic's limit, and librdkafka does not split it, so the loop
// dead-letters an input whose output alone would exceed it and the producer's batches are kept within the
// smallest. When the limits cannot be read within 5 s (no DescribeConfigs permission, brokers away or refusing
// the login) it logs why and returns none: records then meet only the producer's own limit. The bound keeps a
// misconfigured replica from knocking on the brokers with one more client before its own clients' login watch
// (PROCESSOR_AUTH_FAILURE_TIMEOUT) can end it.
func outputLimits(ctx context.Context, cfg Config, log *slog.Logger) map[string]int {
	topics := cfg.outputTopics()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	admin, closeAdmin, err := newAdmin(cfg.adminConfig(), cfg.GroupID+"-topic-limits", "topic-limits", log)
	if err == nil {
		defer closeAdmin()
		var limits map[string]int
		if limits, err = topicLimits(ctx, admin, topics); err == nil {
			return limits
		}
	}
	log.Warn("could not read the output topics' max.message.bytes; a record above a topic's limit will stop the "+
		"processor (exit 1) instead of going to the dead-letter topic", "topics", topics, "error", err)
	return nil
}

// outputTopics are the topics the processor may write records to, each once: a broker refuses a DescribeConfigs
// that names a topic twice, and the route topics usually list the output topic too.
func (c Config) outputTopics() []string {
	topics := []string{c.OutputTopic, c.DeadLetterTopic}
	for _, t := range c.RouteTopics {
		topics = append(topics, strings.TrimSpace(t))
	}
	slices.Sort(topics)
	return slices.Compact(topics)
}

// batchesWithin returns the producer's properties with batch.size lowered to the smallest of limits, when that
// is below the batch.size in effect: a batch above its topic's max.message.bytes is refused whole.
func batchesWithin(limits map[string]int, props map[string]string, log *slog.Logger) map[string]string {
	batch := defaultBatchBytes
	if v, ok := props["batch.size"]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			batch = n
		}
	}
	smallest, topic := batch, ""
	for t, n := range limits {
		if n < smallest {
			smallest, topic = n, t
		}
	}
	if topic == "" {
		return props
	}
	log.Info("producer batch.size lowered to the smallest output topic's max.message.bytes", "batch.size", smallest,
		"topic", topic, "was", batch)
	out := maps.Clone(props)
	if out == nil {
		out = map[string]string{}
	}
	out["batch.size"] = strconv.Itoa(smallest)
	return out
}
