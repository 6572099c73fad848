// Package kafka holds the `kafka` source and sink, on
// github.com/twmb/franz-go (kgo, kadm). docs/connectors/kafka.md is the
// user's reference; this comment states what the code promises.
//
// Source. Every partition is a split {"v":1,"topic","partition","offset",
// "stop"}: offset is the offset after the last record emitted (control
// records of transactions included, so a bounded split can reach its
// stop), stop the end of a bounded split (-1: none). A partition no
// checkpoint assigned belongs to subtask (fnv32a(topic) + partition) mod
// parallelism; its first offset is resolved to a number when it is
// assigned (startingOffsets for the partitions of the first start,
// earliest for partitions and topics that appear later), so a checkpoint
// taken before its first record continues exactly there. The union list
// operator state "kafka-source-partitions-v1" holds each subtask's
// partition counts per topic ({"v":1,"topics":{t:n}}): after a restore,
// at any parallelism, partitions below the largest recorded count are
// read only through the restored splits, and the others are new. On a
// restore, the splits and counts of topics the config no longer reads are
// dropped (logged at INFO), and a topic of the topics list that the
// snapshot does not know starts at startingOffsets. The type's
// CheckRestore reads the same state offline (flowctl savepoint check, the
// JobManager's submit): topics, partitions, offsets, and the topics removed
// (refused unless non-restored state is allowed) and added. Records
// keep the Kafka key as Record.Key and the Kafka timestamp as event time.
// A value that is not JSON under format json is a *RecordError naming
// topic, partition and offset; the position is past it. NewSource asks
// the brokers for the topics' metadata (5 s) so a spec with an unreachable
// broker or a missing topic fails at submit.
//
// Sink. exactly_once gives every transaction a transactional id and a
// client of its own, <prefix>-<subtask>-<n> with n counting up (n is in
// the checkpoint), so a producer id and epoch name one transaction:
// SnapshotState flushes the open transaction and records {id, producer
// id, epoch, checkpoint} in the union list state
// "kafka-sink-transactions-v1"; NotifyCheckpointComplete(c) commits the
// pending transactions of checkpoints <= c. InitializeState after a
// restore commits the recorded transactions of every old subtask j with
// j mod parallelism = its index by an EndTxn request carrying the
// recorded producer id and epoch (an already committed transaction
// answers success; one the broker aborted is logged and counted in
// flow_kafka_sink_transactions_lost_total), then, on every start, aborts
// the Ongoing transactions of the prefix (ListTransactions, Kafka 3.0+)
// of those subtasks by initialising their ids again. at_least_once
// flushes on every barrier; none never waits.
package kafka
