import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Sends KPI readings with Kafka's own Java producer, as an outside system would.
 *
 * <pre>
 * java -cp "KAFKA_JARS/*" ReadingProducer.java BOOTSTRAP TOPIC [TRANSACTIONAL_ID] &lt; steps
 * </pre>
 *
 * Each line of stdin is one step:
 * <ul>
 *   <li>{@code send KEY READING}: send the reading (JSON, the rest of the line) keyed by KEY;
 *   <li>{@code begin}, {@code commit}, {@code abort}: a transaction (needs TRANSACTIONAL_ID).
 * </ul>
 * Each step prints what it did: {@code sent PARTITION OFFSET} for every reading once the broker
 * has it, then {@code committed} or {@code aborted}. Any failure ends the program non-zero.
 */
public final class ReadingProducer {
    public static void main(String[] args) throws Exception {
        if (args.length < 2 || args.length > 3) {
            System.err.println("usage: ReadingProducer BOOTSTRAP TOPIC [TRANSACTIONAL_ID] < steps");
            System.exit(2);
        }
        String topic = args[1];
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        boolean transactional = args.length == 3;
        if (transactional) {
            config.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, args[2]);
        }
        List<Future<RecordMetadata>> pending = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config);
                BufferedReader steps = new BufferedReader(
                        new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            if (transactional) {
                producer.initTransactions();
            }
            for (String line = steps.readLine(); line != null; line = steps.readLine()) {
                String[] step = line.split(" ", 3);
                switch (step[0]) {
                    case "send" -> pending.add(
                            producer.send(new ProducerRecord<>(topic, step[1], step[2])));
                    case "begin" -> producer.beginTransaction();
                    case "commit" -> {
                        report(producer, pending);
                        producer.commitTransaction();
                        System.out.println("committed");
                    }
                    case "abort" -> {
                        // abortTransaction drops what is still buffered: flushing first puts
                        // the readings on the log, so what is aborted was really written.
                        report(producer, pending);
                        producer.abortTransaction();
                        System.out.println("aborted");
                    }
                    default -> throw new IllegalArgumentException("unknown step: " + line);
                }
            }
            report(producer, pending);
        }
    }

    /** Flushes, and prints where each pending reading landed (failing if one did not). */
    private static void report(KafkaProducer<String, String> producer,
            List<Future<RecordMetadata>> pending) throws Exception {
        producer.flush();
        for (Future<RecordMetadata> sent : pending) {
            RecordMetadata where = sent.get();
            System.out.println("sent " + where.partition() + " " + where.offset());
        }
        pending.clear();
    }
}
