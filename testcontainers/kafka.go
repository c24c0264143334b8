// Package testcontainers starts real Apache Kafka clusters in Docker for the project's tests, benchmarks and demo,
// and injects faults into them. It owns the brokers' life cycle (start, clean stop, SIGKILL, pause, network cut,
// restart), topic administration and the broker logs; production code never imports it.
//
// A cluster is 1 combined broker+controller, or 3 of them (KRaft, replication factor 3 and min.insync.replicas 2
// as cluster defaults). Each broker has two listeners: INTERNAL, advertised under its network alias for the other
// brokers, and EXTERNAL, advertised as localhost:<port> for the host. The host port is chosen before the container
// is created and bound explicitly, so it stays the same across restarts: a client that knew the broker before a
// bounce finds it again at the address it advertises, which is what a real client of a real cluster expects.
//
// The image is DefaultImage unless the KAFKA_IMAGE environment variable names another one; scripts/kafka-image.sh
// builds a local image with the same environment interface for machines that cannot pull.
package testcontainers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	tc "github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
)

// DefaultImage is the official Apache Kafka image, pinned to the release whose jars the local image is built
// from (testcontainers/image/pom.xml). Bump both together.
const DefaultImage = "apache/kafka:4.4.0"

// ImageEnv names the environment variable that selects another image, e.g. the local build.
const ImageEnv = "KAFKA_IMAGE"

const (
	externalPort = "9092/tcp"
	internalPort = 19092
	extraPort    = 9094 // the first extra listener's container port; the next ones follow
	controlPort  = 9093
	clusterID    = "eosproc-test-cluster-A1"
)

// LogDir is where each broker keeps its partitions' files, inside its container.
const LogDir = "/tmp/kafka-logs"

// Options configure a cluster. The zero value is a single broker on the image from ImageEnv or DefaultImage.
type Options struct {
	// Brokers is 1 or 3 (0 means 1).
	Brokers int
	// Image overrides ImageEnv and DefaultImage.
	Image string
	// HeapOpts is the JVM heap of each broker (KAFKA_HEAP_OPTS); default -Xmx512m -Xms256m, small enough for
	// three brokers beside the processors on a 2-core test machine.
	HeapOpts string
	// BrokerConfig adds or overrides broker properties, e.g. {"transaction.max.timeout.ms": "60000"}.
	BrokerConfig map[string]string
	// StartupTimeout bounds how long the cluster may take to answer; default 3 minutes.
	StartupTimeout time.Duration
	// Listeners adds listeners to every broker beside INTERNAL and EXTERNAL (which stay PLAINTEXT, for the
	// brokers and the harness), each advertised as localhost:<port> and found with ListenerBootstrapServers.
	// Their settings go in BrokerConfig with the listener.name.<lower-case name>. prefix, the files those
	// settings name (certificates, keys) in Files.
	Listeners []Listener
	// Files are written into every broker's container before it first starts: container path -> content. The
	// directory must exist in the image (/tmp does in every image).
	Files map[string][]byte
}

// Listener is an extra broker listener, e.g. {Name: "SECURE", Protocol: "SASL_SSL"}.
type Listener struct {
	Name     string // upper case, as in Kafka's listener names
	Protocol string // PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
}

// Cluster is a running Kafka cluster. Its methods are safe for concurrent use.
type Cluster struct {
	image    string
	network  *tc.DockerNetwork
	brokers  []*broker
	docker   *tc.DockerClient
	adminMu  sync.Mutex
	admin    *kafka.AdminClient
	readyFor time.Duration
}

type broker struct {
	id        int
	alias     string
	hostPort  int
	extra     map[string]int // host port of each extra listener, by name
	container tc.Container
}

// Image returns the image the harness uses when Options.Image is empty: ImageEnv if set, else DefaultImage.
func Image() string {
	if image := os.Getenv(ImageEnv); image != "" {
		return image
	}
	return DefaultImage
}

// Start starts a cluster and returns once every broker answers at its advertised address.
// On error, everything it created is removed.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	n := opts.Brokers
	if n == 0 {
		n = 1
	}
	if n != 1 && n != 3 {
		return nil, fmt.Errorf("start kafka cluster: %d brokers requested, only 1 or 3 are supported", n)
	}
	if opts.Image == "" {
		opts.Image = Image()
	}
	if opts.HeapOpts == "" {
		opts.HeapOpts = "-Xmx512m -Xms256m"
	}
	if opts.StartupTimeout == 0 {
		opts.StartupTimeout = 3 * time.Minute
	}

	docker, err := tc.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("start kafka cluster: connect to the Docker engine (run 'make setup'): %w", err)
	}
	c := &Cluster{image: opts.Image, docker: docker, readyFor: opts.StartupTimeout}
	defer func() {
		if err != nil {
			_ = c.Terminate(context.WithoutCancel(ctx))
		}
	}()

	if c.network, err = tcnetwork.New(ctx); err != nil {
		return nil, fmt.Errorf("start kafka cluster: create docker network: %w", err)
	}
	var voters []string
	for id := 1; id <= n; id++ {
		port, err := FreeLoopbackPort()
		if err != nil {
			return nil, fmt.Errorf("start kafka cluster: choose a host port for broker %d: %w", id, err)
		}
		b := &broker{id: id, alias: "kafka-" + strconv.Itoa(id), hostPort: port, extra: map[string]int{}}
		for _, l := range opts.Listeners {
			if b.extra[l.Name], err = FreeLoopbackPort(); err != nil {
				return nil, fmt.Errorf("start kafka cluster: choose a host port for listener %s of broker %d: %w", l.Name, id, err)
			}
		}
		c.brokers = append(c.brokers, b)
		voters = append(voters, fmt.Sprintf("%d@%s:%d", id, b.alias, controlPort))
	}

	started := time.Now()
	for _, b := range c.brokers {
		env := brokerEnv(b, n, strings.Join(voters, ","), opts)
		if b.container, err = c.createBroker(ctx, b, env, opts); err != nil {
			return nil, err
		}
	}
	// The brokers start together: a KRaft quorum of 3 needs a majority before any of them finishes starting.
	errs := make(chan error, n)
	for _, b := range c.brokers {
		go func() { errs <- b.container.Start(ctx) }()
	}
	for range c.brokers {
		if e := <-errs; e != nil && err == nil {
			err = fmt.Errorf("start kafka cluster: start container: %w", e)
		}
	}
	if err != nil {
		return nil, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, opts.StartupTimeout)
	defer cancel()
	if err := c.waitClusterReady(waitCtx); err != nil {
		return nil, fmt.Errorf("start kafka cluster of %d on %s: not ready after %s: %w",
			n, c.image, time.Since(started).Round(time.Second), err)
	}
	return c, nil
}

func brokerEnv(b *broker, n int, voters string, opts Options) map[string]string {
	replication := strconv.Itoa(n)
	minISR := "1"
	if n == 3 {
		minISR = "2"
	}
	env := map[string]string{
		"CLUSTER_ID":      clusterID,
		"KAFKA_HEAP_OPTS": opts.HeapOpts,
	}
	props := map[string]string{
		"node.id":                                  strconv.Itoa(b.id),
		"process.roles":                            "broker,controller",
		"controller.quorum.voters":                 voters,
		"controller.listener.names":                "CONTROLLER",
		"inter.broker.listener.name":               "INTERNAL",
		"listeners":                                fmt.Sprintf("INTERNAL://:%d,EXTERNAL://:9092,CONTROLLER://:%d", internalPort, controlPort),
		"advertised.listeners":                     fmt.Sprintf("INTERNAL://%s:%d,EXTERNAL://localhost:%d", b.alias, internalPort, b.hostPort),
		"listener.security.protocol.map":           "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
		"log.dirs":                                 LogDir,
		"default.replication.factor":               replication,
		"min.insync.replicas":                      minISR,
		"offsets.topic.replication.factor":         replication,
		"transaction.state.log.replication.factor": replication,
		"transaction.state.log.min.isr":            minISR,
		"offsets.topic.num.partitions":             "10",
		"transaction.state.log.num.partitions":     "10",
		"group.initial.rebalance.delay.ms":         "0",
		"auto.create.topics.enable":                "false",
		// A fenced or restarted broker is noticed within seconds rather than the default 9s+, so fault tests
		// spend their time on faults, not on waiting.
		"broker.session.timeout.ms":    "6000",
		"broker.heartbeat.interval.ms": "1000",
	}
	for i, l := range opts.Listeners {
		props["listeners"] += fmt.Sprintf(",%s://:%d", l.Name, extraPort+i)
		props["advertised.listeners"] += fmt.Sprintf(",%s://localhost:%d", l.Name, b.extra[l.Name])
		props["listener.security.protocol.map"] += fmt.Sprintf(",%s:%s", l.Name, l.Protocol)
	}
	for k, v := range opts.BrokerConfig {
		props[k] = v
	}
	for k, v := range props {
		env[propertyEnv(k)] = v
	}
	return env
}

// propertyEnv is the inverse of the images' mapping from KAFKA_ variables to broker properties.
func propertyEnv(property string) string {
	r := strings.NewReplacer("-", "___", "_", "__", ".", "_")
	return "KAFKA_" + strings.ToUpper(r.Replace(property))
}

func (c *Cluster) createBroker(ctx context.Context, b *broker, env map[string]string, opts Options) (tc.Container, error) {
	exposed := []string{externalPort}
	bindings := network.PortMap{network.MustParsePort(externalPort): {{
		HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(b.hostPort),
	}}}
	for i, l := range opts.Listeners {
		port := strconv.Itoa(extraPort+i) + "/tcp"
		exposed = append(exposed, port)
		bindings[network.MustParsePort(port)] = []network.PortBinding{{
			HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(b.extra[l.Name]),
		}}
	}
	var files []tc.ContainerFile
	for path, content := range opts.Files {
		files = append(files, tc.ContainerFile{Reader: bytes.NewReader(content), ContainerFilePath: path, FileMode: 0o644})
	}
	req := tc.GenericContainerRequest{
		ContainerRequest: tc.ContainerRequest{
			Image:          c.image,
			Name:           fmt.Sprintf("eosproc-%s-%s", b.alias, c.network.ID[:12]),
			Env:            env,
			ExposedPorts:   exposed,
			Networks:       []string{c.network.Name},
			NetworkAliases: map[string][]string{c.network.Name: {b.alias}},
			Files:          files,
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.PortBindings = bindings
			},
		},
	}
	ctr, err := tc.GenericContainer(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("create container for broker %d from image %s (set %s, or run 'make setup' to build the local image): %w",
			b.id, c.image, ImageEnv, err)
	}
	return ctr, nil
}

// FreeLoopbackPort asks the kernel for a loopback port that is free now, for a broker's host port or a child
// processor's HTTP port. Another process could take it before its user binds it, which then fails clearly with
// "address already in use".
func FreeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// BootstrapServers is the comma-separated list of every broker's host address.
func (c *Cluster) BootstrapServers() string {
	addrs := make([]string, len(c.brokers))
	for i, b := range c.brokers {
		addrs[i] = b.address()
	}
	return strings.Join(addrs, ",")
}

// InternalBootstrapServers is the comma-separated list of every broker's address on the cluster's Docker
// network (kafka-1:19092, ...): what a container joined to NetworkName uses.
func (c *Cluster) InternalBootstrapServers() string {
	addrs := make([]string, len(c.brokers))
	for i, b := range c.brokers {
		addrs[i] = fmt.Sprintf("%s:%d", b.alias, internalPort)
	}
	return strings.Join(addrs, ",")
}

// NetworkName is the cluster's Docker network, for containers (a processor image) that reach the brokers at
// InternalBootstrapServers.
func (c *Cluster) NetworkName() string { return c.network.Name }

// ListenerBootstrapServers is the comma-separated host address of the extra listener name (Options.Listeners)
// on every broker.
func (c *Cluster) ListenerBootstrapServers(name string) string {
	addrs := make([]string, len(c.brokers))
	for i, b := range c.brokers {
		port, ok := b.extra[name]
		if !ok {
			panic(fmt.Sprintf("testcontainers: the cluster has no listener %q (Options.Listeners)", name))
		}
		addrs[i] = "localhost:" + strconv.Itoa(port)
	}
	return strings.Join(addrs, ",")
}

// BrokerIDs lists the node ids of the cluster's brokers: 1, or 1, 2, 3.
func (c *Cluster) BrokerIDs() []int {
	ids := make([]int, len(c.brokers))
	for i, b := range c.brokers {
		ids[i] = b.id
	}
	return ids
}

// BrokerAddress is the host address broker id advertises.
func (c *Cluster) BrokerAddress(id int) string { return c.broker(id).address() }

func (b *broker) address() string { return "localhost:" + strconv.Itoa(b.hostPort) }

// BrokerPID is the host's process id of the first process in broker id's container (the broker's JVM, or what
// starts it), for benchmarks that read the broker's CPU use from /proc.
func (c *Cluster) BrokerPID(ctx context.Context, id int) (int, error) {
	st, err := c.broker(id).container.State(ctx)
	if err != nil {
		return 0, fmt.Errorf("state of broker %d: %w", id, err)
	}
	if st.Pid == 0 {
		return 0, fmt.Errorf("broker %d is not running", id)
	}
	return st.Pid, nil
}

// Image returns the image the cluster runs.
func (c *Cluster) Image() string { return c.image }

func (c *Cluster) broker(id int) *broker {
	for _, b := range c.brokers {
		if b.id == id {
			return b
		}
	}
	panic(fmt.Sprintf("testcontainers: no broker %d in a cluster of %d", id, len(c.brokers)))
}

// Terminate removes the brokers and the network. Brokers are killed, not stopped: nothing of theirs is kept.
func (c *Cluster) Terminate(ctx context.Context) error {
	c.adminMu.Lock()
	if c.admin != nil {
		c.admin.Close()
		c.admin = nil
	}
	c.adminMu.Unlock()
	var errs []error
	for _, b := range c.brokers {
		if b.container != nil {
			errs = append(errs, b.container.Terminate(ctx, tc.StopTimeout(0)))
		}
	}
	if c.network != nil {
		errs = append(errs, c.network.Remove(ctx))
	}
	if c.docker != nil {
		errs = append(errs, c.docker.Close())
	}
	return errors.Join(errs...)
}

// StopBroker stops broker id cleanly (SIGTERM, then up to 60 s for a controlled shutdown).
func (c *Cluster) StopBroker(ctx context.Context, id int) error {
	timeout := 60 * time.Second
	if err := c.broker(id).container.Stop(ctx, &timeout); err != nil {
		return fmt.Errorf("stop broker %d: %w", id, err)
	}
	return nil
}

// KillBroker kills broker id with SIGKILL: no controlled shutdown, unflushed data is the log's to recover.
func (c *Cluster) KillBroker(ctx context.Context, id int) error {
	b := c.broker(id)
	if _, err := c.docker.ContainerKill(ctx, b.container.GetContainerID(), client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		return fmt.Errorf("kill broker %d: %w", id, err)
	}
	// Docker reports the kill before the container has exited; a start issued now could find it still running.
	for {
		state, err := b.container.State(ctx)
		if err != nil {
			return fmt.Errorf("kill broker %d: inspect: %w", id, err)
		}
		if !state.Running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill broker %d: still running: %w", id, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartBroker starts a stopped or killed broker again, at the same address, and waits until it answers there.
func (c *Cluster) StartBroker(ctx context.Context, id int) error {
	b := c.broker(id)
	if err := b.container.Start(ctx); err != nil {
		return fmt.Errorf("start broker %d: %w", id, err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, c.readyFor)
	defer cancel()
	if err := waitBrokerAnswers(waitCtx, b, len(c.brokers)); err != nil {
		return fmt.Errorf("start broker %d: not answering at %s: %w", id, b.address(), err)
	}
	return nil
}

// PauseBroker freezes broker id (cgroup freezer): its connections stay open but nothing is answered, as in a
// long GC pause or a hung VM.
func (c *Cluster) PauseBroker(ctx context.Context, id int) error {
	if _, err := c.docker.ContainerPause(ctx, c.broker(id).container.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause broker %d: %w", id, err)
	}
	return nil
}

// UnpauseBroker resumes a paused broker.
func (c *Cluster) UnpauseBroker(ctx context.Context, id int) error {
	if _, err := c.docker.ContainerUnpause(ctx, c.broker(id).container.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause broker %d: %w", id, err)
	}
	return nil
}

// DisconnectBroker cuts broker id off the cluster network: the other brokers and the host can no longer reach
// it, and it reaches nobody, while the process keeps running.
func (c *Cluster) DisconnectBroker(ctx context.Context, id int) error {
	b := c.broker(id)
	_, err := c.docker.NetworkDisconnect(ctx, c.network.ID, client.NetworkDisconnectOptions{
		Container: b.container.GetContainerID(), Force: true,
	})
	if err != nil {
		return fmt.Errorf("disconnect broker %d from network %s: %w", id, c.network.Name, err)
	}
	return nil
}

// ReconnectBroker joins a disconnected broker to the cluster network again, under its alias and host port.
func (c *Cluster) ReconnectBroker(ctx context.Context, id int) error {
	b := c.broker(id)
	_, err := c.docker.NetworkConnect(ctx, c.network.ID, client.NetworkConnectOptions{
		Container:      b.container.GetContainerID(),
		EndpointConfig: &network.EndpointSettings{Aliases: []string{b.alias}},
	})
	if err != nil {
		return fmt.Errorf("reconnect broker %d to network %s: %w", id, c.network.Name, err)
	}
	return nil
}

// Logs writes broker id's log (stdout and stderr of every run of its container) to w.
func (c *Cluster) Logs(ctx context.Context, id int, w io.Writer) error {
	rc, err := c.broker(id).container.Logs(ctx)
	if err != nil {
		return fmt.Errorf("logs of broker %d: %w", id, err)
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}
