// Package backpressure owns the rate controller: how many records each assigned partition may
// contribute to the next micro-batch, learnt from how long the committed batches took. It is pure:
// no I/O, no goroutines, no clock; the loop reports each batch (BatchStats) and asks for budgets.
//
// # Why not just Spark's law
//
// Spark Streaming's PIDRateEstimator (SparkPID here, kept as the reference) with its default gains
// reduces to
//
//	rate' = processed - 0.2 * delay * processed / interval,   processed = records / processing time
//
// which has four weaknesses on a real consume-transform-produce loop, where a batch costs a fixed
// part (the transaction commit, fetches) plus a part per record:
//
//   - The processing rate of a small batch is mostly fixed cost, so it underestimates what a full
//     batch can do: after a cold start or a speed-up Spark only approaches the sustainable rate
//     geometrically (near it, the error shrinks by the ratio fixed cost/interval per batch), and
//     it spends its first batch as a seed.
//   - It aims at 100% of the interval, so on a noisy plant it keeps running late and above the
//     sustainable rate.
//   - It sees a late schedule only when the next batch starts late, one batch after the slow batch
//     that caused it; meanwhile it reads at the slow batch's processing rate, which lies above
//     the new sustainable rate when there is a fixed cost.
//   - Its floor, 100 records/s, is the same for one partition or a thousand.
//
// # The law used here (Adaptive)
//
// Adaptive fits the batch time as t(n) = c0 + c1*n by exponentially weighted least squares over
// the last few batches (a batch's weight falls by 0.7 per newer batch). The sustainable rate, at
// which a batch takes exactly the interval I, is then C/I with C = (I - c0)/c1 records, and the
// next rate is
//
//	rate = min(2 * n/p, max(C/4, min(0.95*C, C - late/(5*c1)))) / I
//
// where n and p are the records and processing time of the batch just committed and late =
// max(0, delay + p - I) is how far behind its schedule the next batch will start. Reading it
// term by term:
//
//   - 0.95*C leaves 5% of the capacity for noise, and the rate settles there once c0 is measured.
//     Until then (c0 taken as zero) it settles where a batch takes 95% of the interval, which is
//     still within 10% of the sustainable rate while the fixed cost is under half the interval.
//   - C - late/(5*c1) drains a late schedule over about five batches, starting with the batch
//     right after the slow one; C/4 keeps the drain gentle. A late loop does not wait for its
//     clock, so reading less does not work a backlog off sooner: it moves records into the Kafka
//     lag and pays the fixed cost for fewer records. Spark instead drops to its floor after a
//     very slow batch; it returns to the band sooner after a 10x slowdown, at the price of
//     stopping the pipeline (see the simulation test).
//   - 2*n/p bounds growth by the throughput the plant has shown: the model is a line, and a
//     plant that is not linear must show it at twice the size before it is trusted further.
//   - When the fixed cost alone fills the interval (c0 >= 0.95*I: a broker still warming up, a slow
//     coordinator), no rate meets the interval, and a batch yields the more records per second the
//     larger it is: the rate is then the loop's batch cap over the interval (BatchStats.MaxRecords).
//     The law above would shrink the batch towards nothing instead and hold the throughput far below
//     what the loop reaches unthrottled. Batches of different sizes that take about the same time,
//     at least the interval, show that regime; when batches held at the partitions' floors overrun
//     the interval, one four times larger is asked for, to tell.
//
// A fit needs two batch sizes far enough apart (20%) that the time between them stands out of
// the noise (3 times the usual miss); until then, and after the plant changes, c0 is the last
// measured one or zero, whichever errs on the safe side. A batch that misses the prediction by
// more than 25% (or 3 times the usual miss on a noisy plant) restarts the fit, so one batch
// re-measures the cost per record after a slower transform, a faster broker or a new partition.
//
// # Budgets
//
// Controller splits the total rate over partitions in proportion to their lag (Split), so that
// they catch up together, within a floor and a cap per partition
// (spark.streaming.kafka.minRatePerPartition and maxRatePerPartition): the total floor grows with
// the partition count, what a cap takes goes to the others, and a lagging partition never gets a
// zero budget. Spark's batch reads only what was in Kafka when it started; this consumer keeps
// reading while a batch assembles, so when the rate allows more than all the lags, every partition
// also gets an equal share of the rest: split by the lags alone, a partition caught up at the
// instant the batch started (on a live stream, any whose fetch had just been taken) would get its
// floor, and its arrivals would wait a whole interval. Before the first estimate an initial rate applies if one is set
// (spark.streaming.backpressure.initialRate); without one, as in Spark, the first batch is not
// limited (the loop's batch cap applies). Disabled, every budget is Unlimited.
package backpressure
