package testcontainers

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// adminClient returns the cluster's shared admin client, created on first use. librdkafka re-resolves the
// bootstrap list and follows the cluster's metadata, so one client survives broker bounces.
func (c *Cluster) adminClient() (*kafka.AdminClient, error) {
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	if c.admin == nil {
		admin, err := kafka.NewAdminClient(&kafka.ConfigMap{
			"bootstrap.servers": c.BootstrapServers(),
			"log_level":         3, // errors only: a bounced broker is expected here, not news
		})
		if err != nil {
			return nil, fmt.Errorf("create admin client for %s: %w", c.BootstrapServers(), err)
		}
		c.admin = admin
	}
	return c.admin, nil
}

// CreateTopic creates a topic and waits until every partition has a leader. Replication 0 means the cluster's
// size; configs are topic properties such as {"cleanup.policy": "compact"}.
func (c *Cluster) CreateTopic(ctx context.Context, name string, partitions, replication int, configs map[string]string) error {
	admin, err := c.adminClient()
	if err != nil {
		return err
	}
	if replication == 0 {
		replication = len(c.brokers)
	}
	results, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: replication, Config: configs,
	}}, kafka.SetAdminOperationTimeout(30*time.Second))
	if err == nil && results[0].Error.Code() != kafka.ErrNoError {
		err = results[0].Error
	}
	if err != nil {
		return fmt.Errorf("create topic %q (%d partitions, replication %d): %w", name, partitions, replication, err)
	}
	return c.waitLeaders(ctx, name, partitions)
}

// AddPartitions grows a topic to total partitions and waits until the new ones have leaders.
func (c *Cluster) AddPartitions(ctx context.Context, topic string, total int) error {
	admin, err := c.adminClient()
	if err != nil {
		return err
	}
	results, err := admin.CreatePartitions(ctx, []kafka.PartitionsSpecification{{Topic: topic, IncreaseTo: total}},
		kafka.SetAdminOperationTimeout(30*time.Second))
	if err == nil && results[0].Error.Code() != kafka.ErrNoError {
		err = results[0].Error
	}
	if err != nil {
		return fmt.Errorf("add partitions to %q (to %d in total): %w", topic, total, err)
	}
	return c.waitLeaders(ctx, topic, total)
}

// DeleteTopic deletes a topic.
func (c *Cluster) DeleteTopic(ctx context.Context, topic string) error {
	admin, err := c.adminClient()
	if err != nil {
		return err
	}
	results, err := admin.DeleteTopics(ctx, []string{topic}, kafka.SetAdminOperationTimeout(30*time.Second))
	if err == nil && results[0].Error.Code() != kafka.ErrNoError {
		err = results[0].Error
	}
	if err != nil {
		return fmt.Errorf("delete topic %q: %w", topic, err)
	}
	return nil
}

// PartitionState is what the cluster's metadata says of one partition.
type PartitionState struct {
	Leader   int // -1 when it has none
	Replicas []int
	ISR      []int
}

// Partition describes one partition of topic, from a metadata request any live broker answers. (The admin API's
// DescribeTopics waits for the controller and keeps waiting on a dead one after a broker is killed.)
func (c *Cluster) Partition(ctx context.Context, topic string, partition int) (PartitionState, error) {
	parts, err := c.partitions(ctx, topic)
	if err != nil {
		return PartitionState{}, err
	}
	for _, p := range parts {
		if int(p.ID) == partition {
			state := PartitionState{Leader: int(p.Leader)}
			for _, r := range p.Replicas {
				state.Replicas = append(state.Replicas, int(r))
			}
			for _, r := range p.Isrs {
				state.ISR = append(state.ISR, int(r))
			}
			slices.Sort(state.ISR)
			slices.Sort(state.Replicas)
			return state, nil
		}
	}
	return PartitionState{}, fmt.Errorf("metadata of topic %q: no partition %d among %d", topic, partition, len(parts))
}

func (c *Cluster) partitions(ctx context.Context, topic string) ([]kafka.PartitionMetadata, error) {
	admin, err := c.adminClient()
	if err != nil {
		return nil, err
	}
	timeout := 10 * time.Second
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < timeout {
		timeout = time.Until(deadline)
	}
	md, err := admin.GetMetadata(&topic, false, int(timeout.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("metadata of topic %q: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok {
		return nil, fmt.Errorf("metadata of topic %q: not in the answer", topic)
	}
	if tm.Error.Code() != kafka.ErrNoError {
		return nil, fmt.Errorf("metadata of topic %q: %w", topic, tm.Error)
	}
	return tm.Partitions, nil
}

// WaitFor polls cond every 200 ms until it returns true, an error, or ctx ends. It is how tests wait on the
// cluster (a leader elected, a replica back in the ISR) instead of sleeping.
func WaitFor(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	var lastErr error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("wait for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			}
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitLeaders waits until each broker, asked at its own address, lists partitions partitions of topic with a
// leader each. Brokers learn of a topic's partitions from the controller one after another, and a client whose
// metadata came from one that had not yet failed the records it was given for them ("Local: Unknown partition"
// in the chaos matrix's added-partitions row, writing to the new partitions right after AddPartitions). A broker
// that does not answer (stopped, cut off) gives no client metadata and is skipped; one at least must answer.
func (c *Cluster) waitLeaders(ctx context.Context, topic string, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	answered := 0
	for _, b := range c.brokers {
		admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": b.address(), "log_level": 0})
		if err != nil {
			return fmt.Errorf("create admin client for %s: %w", b.address(), err)
		}
		err = WaitFor(ctx, fmt.Sprintf("broker %d to list leaders of %d partitions of %q", b.id, partitions, topic), func(ctx context.Context) (bool, error) {
			md, err := admin.GetMetadata(&topic, false, 5000)
			if err != nil {
				return true, nil // not answering: no client gets metadata from it
			}
			tm := md.Topics[topic]
			if len(tm.Partitions) < partitions {
				return false, nil
			}
			for _, p := range tm.Partitions {
				if p.Leader < 0 || p.Error.Code() == kafka.ErrLeaderNotAvailable {
					return false, nil
				}
			}
			answered++
			return true, nil
		})
		admin.Close()
		if err != nil {
			return err
		}
	}
	if answered == 0 {
		return fmt.Errorf("leaders of %d partitions of %q: no broker answered a metadata request", partitions, topic)
	}
	return nil
}

// waitClusterReady waits until the metadata lists every broker, seen through every broker's own address.
func (c *Cluster) waitClusterReady(ctx context.Context) error {
	for _, b := range c.brokers {
		if err := waitBrokerAnswers(ctx, b, len(c.brokers)); err != nil {
			return fmt.Errorf("broker %d at %s: %w", b.id, b.address(), err)
		}
	}
	return nil
}

// waitBrokerAnswers waits until broker b, asked at its own advertised address, serves metadata listing all
// brokers of the cluster: then it is started, registered, and reachable from the host.
func waitBrokerAnswers(ctx context.Context, b *broker, brokers int) error {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{
		"bootstrap.servers": b.address(),
		"log_level":         0, // connection refused is expected while the broker starts
	})
	if err != nil {
		return fmt.Errorf("create admin client for %s: %w", b.address(), err)
	}
	defer admin.Close()
	return WaitFor(ctx, fmt.Sprintf("broker %d to list %d brokers", b.id, brokers), func(ctx context.Context) (bool, error) {
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := admin.DescribeCluster(reqCtx, kafka.SetAdminRequestTimeout(5*time.Second))
		if err != nil {
			return false, err
		}
		return len(res.Nodes) == brokers, nil
	})
}

// UpsertScramCredential creates or replaces user's SCRAM-SHA-512 credential, which a SASL listener of
// Options.Listeners then accepts. It goes through the PLAINTEXT listener with the admin API (KRaft keeps SCRAM
// credentials in its metadata log), so it works on the official image and the local one alike; the brokers
// learn the credential from the metadata log within moments.
func (c *Cluster) UpsertScramCredential(ctx context.Context, user, password string) error {
	admin, err := c.adminClient()
	if err != nil {
		return err
	}
	res, err := admin.AlterUserScramCredentials(ctx, []kafka.UserScramCredentialUpsertion{{
		User:                user,
		ScramCredentialInfo: kafka.ScramCredentialInfo{Mechanism: kafka.ScramMechanismSHA512, Iterations: 4096},
		Password:            []byte(password),
	}}, nil)
	if err == nil {
		if e, ok := res.Errors[user]; ok && e.Code() != kafka.ErrNoError {
			err = e
		}
	}
	if err != nil {
		return fmt.Errorf("upsert SCRAM-SHA-512 credential of user %q: %w", user, err)
	}
	return nil
}

// GroupCoordinator is the id of the broker that coordinates group (the leader of its __consumer_offsets
// partition), waiting until one answers for it.
func (c *Cluster) GroupCoordinator(ctx context.Context, group string) (int, error) {
	admin, err := c.adminClient()
	if err != nil {
		return 0, err
	}
	id := -1
	err = WaitFor(ctx, "the coordinator of group "+group, func(ctx context.Context) (bool, error) {
		res, err := admin.DescribeConsumerGroups(ctx, []string{group})
		if err != nil || len(res.ConsumerGroupDescriptions) != 1 {
			return false, nil // coordinator moving or loading: ask again
		}
		d := res.ConsumerGroupDescriptions[0]
		if d.Error.Code() != kafka.ErrNoError {
			return false, nil
		}
		id = int(d.Coordinator.ID)
		return id >= 0, nil
	})
	return id, err
}

// TopicConfig is topic's configuration as the brokers report it, defaults included.
func (c *Cluster) TopicConfig(ctx context.Context, topic string) (map[string]string, error) {
	admin, err := c.adminClient()
	if err != nil {
		return nil, err
	}
	res, err := admin.DescribeConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic}})
	if err != nil {
		return nil, fmt.Errorf("describe topic %q: %w", topic, err)
	}
	if len(res) != 1 || res[0].Error.Code() != kafka.ErrNoError {
		return nil, fmt.Errorf("describe topic %q: %v", topic, res)
	}
	out := map[string]string{}
	for name, e := range res[0].Config {
		out[name] = e.Value
	}
	return out, nil
}
