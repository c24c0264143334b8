// Command processor is the exactly-once Kafka-to-Kafka processor binary: it reads its configuration from
// PROCESSOR_* environment variables (`processor -h` lists them), runs until SIGTERM or SIGINT, and exits 0 after
// a clean shutdown, 1 on a runtime error (fenced, broker refused, ...), 2 on invalid configuration.
package main

import "github.com/eosproc/eosproc/processor"

func main() { processor.Main(nil) }
