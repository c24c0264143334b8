package testcontainers

import (
	"context"
	"fmt"
	"io"

	tcexec "github.com/testcontainers/testcontainers-go/exec"
)

// Exec runs cmd inside broker id's container and returns its exit code and its stdout and stderr interleaved.
// Benchmarks use it to run Kafka's own tools (ProducerPerformance, ConsumerPerformance) beside the broker, from
// the same jars; inside the container the broker answers at InternalBootstrapServers, not at the host address
// it advertises on EXTERNAL (localhost:<host port> is the container's own loopback there).
func (c *Cluster) Exec(ctx context.Context, id int, cmd []string) (exitCode int, output string, err error) {
	code, r, err := c.broker(id).container.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return -1, "", fmt.Errorf("exec %q in broker %d: %w", cmd, id, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return code, string(out), fmt.Errorf("exec %q in broker %d: read output: %w", cmd, id, err)
	}
	return code, string(out), nil
}
