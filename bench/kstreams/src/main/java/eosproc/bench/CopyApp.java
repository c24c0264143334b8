package eosproc.bench;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Copies every record of one topic to another, exactly once: what the processor does with its identity transform,
 * written the way a Kafka Streams user would (defaults everywhere except the guarantee and the commit interval).
 *
 * <p>Configured by environment variables: BROKERS, INPUT_TOPIC, OUTPUT_TOPIC, APP_ID, COMMIT_INTERVAL_MS, and
 * optionally STREAM_THREADS (default 1, Kafka Streams' default). It runs until SIGTERM.
 */
public final class CopyApp {
    public static void main(String[] args) throws InterruptedException {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, env("APP_ID", null));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("BROKERS", null));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, env("COMMIT_INTERVAL_MS", "100"));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, env("STREAM_THREADS", "1"));
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(env("INPUT_TOPIC", null), Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .to(env("OUTPUT_TOPIC", null), Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(10));
            stopped.countDown();
        }));
        streams.start();
        stopped.await();
    }

    private static String env(String name, String fallback) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            if (fallback == null) {
                throw new IllegalArgumentException("environment variable " + name + " is required");
            }
            return fallback;
        }
        return v;
    }
}
