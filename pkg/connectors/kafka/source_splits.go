package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
)

// This file holds the source's checkpoints: a split per partition with
// its next offset, and offsets committed to the group on completion.

// Splits implements api.SplitSource: one split per unfinished partition,
// at the offset after the last record emitted.
func (s *Source) Splits() ([][]byte, error) {
	if !s.initialized && s.hasRestored {
		out := make([][]byte, 0, len(s.restored))
		for _, sp := range s.restored {
			b, _ := json.Marshal(sp)
			out = append(out, b)
		}
		return out, nil
	}
	out := make([][]byte, 0, len(s.order))
	for _, p := range s.order {
		if p.done {
			continue
		}
		b, err := json.Marshal(p.split)
		if err != nil {
			return nil, fmt.Errorf("kafka source: encode split: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// RestoreSplits implements api.SplitSource. The splits of topics the
// config no longer reads are dropped and logged (the JobManager restores
// such a snapshot only with --allow-non-restored-state: see CheckRestore).
func (s *Source) RestoreSplits(splits [][]byte) error {
	out := make([]split, 0, len(splits))
	dropped := map[string][]string{}
	for _, b := range splits {
		sp, err := decodeSplit(b)
		if err != nil {
			return err
		}
		if !s.reads(sp.Topic) {
			dropped[sp.Topic] = append(dropped[sp.Topic], fmt.Sprintf("%d@%d", sp.Partition, sp.Offset))
			continue
		}
		out = append(out, sp)
	}
	topics := make([]string, 0, len(dropped))
	for t := range dropped {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		if s.log != nil {
			s.log.Info("kafka source: dropping the restored offsets of a topic the config no longer reads (non-restored state allowed)",
				"topic", t, "partitions", strings.Join(dropped[t], " "))
		}
	}
	s.restored, s.hasRestored = out, true
	return nil
}

// decodeSplit decodes and validates a split.
func decodeSplit(b []byte) (split, error) {
	var sp split
	if err := json.Unmarshal(b, &sp); err != nil {
		return sp, fmt.Errorf("kafka source: decode split %q: %w", b, err)
	}
	if sp.V != splitVersion {
		return sp, fmt.Errorf("kafka source: split %q has format version %d; this release reads version %d", b, sp.V, splitVersion)
	}
	if sp.Topic == "" || sp.Partition < 0 || sp.Offset < 0 {
		return sp, fmt.Errorf("kafka source: split %q: want a topic, a partition and an offset >= 0", b)
	}
	return sp, nil
}

// SnapshotState implements api.CheckpointedFunction: it records the
// partitions known to this subtask, and remembers the offsets to commit
// to the group when checkpoint id completes.
func (s *Source) SnapshotState(id int64) error {
	if s.state != nil {
		b, err := json.Marshal(knownElem{V: 1, Topics: s.known})
		if err != nil {
			return fmt.Errorf("kafka source: encode partitions: %w", err)
		}
		if err := s.state.Update([][]byte{b}); err != nil {
			return fmt.Errorf("kafka source: %w", err)
		}
	}
	if s.group != "" {
		offs := kadm.Offsets{}
		for _, p := range s.order {
			offs.Add(kadm.Offset{Topic: p.Topic, Partition: p.Partition, At: p.Offset, LeaderEpoch: -1})
		}
		s.commits = append(s.commits, commitAt{id: id, offsets: offs})
		if len(s.commits) > 16 {
			s.commits = s.commits[len(s.commits)-16:]
		}
	}
	return nil
}

// NotifyCheckpointComplete implements api.CheckpointListener: the offsets
// of the latest snapshot up to id go to the group (best effort: Flow's
// positions live in the checkpoint, the group's only serve lag tools and
// startingOffsets committed).
func (s *Source) NotifyCheckpointComplete(id int64) error {
	var c *commitAt
	rest := s.commits[:0]
	for i := range s.commits {
		if s.commits[i].id <= id {
			c = &commitAt{id: s.commits[i].id, offsets: s.commits[i].offsets}
		} else {
			rest = append(rest, s.commits[i])
		}
	}
	s.commits = rest
	if c == nil || len(c.offsets) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	resp, err := s.adm.CommitOffsets(ctx, s.group, c.offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		s.log.Warn("kafka source: commit offsets to the group failed; the next checkpoint commits again", "group", s.group, "checkpoint", c.id, "err", err)
	}
	return nil
}

// NotifyCheckpointAborted implements api.CheckpointListener.
func (s *Source) NotifyCheckpointAborted(int64) error { return nil }

// Position implements api.Source; the runtime stores Splits instead.
func (s *Source) Position() ([]byte, error) {
	return nil, errors.New("kafka source: positions are splits (api.SplitSource)")
}

// Restore implements api.Source.
func (s *Source) Restore([]byte) error {
	return errors.New("kafka source: a snapshot without Kafka splits cannot be restored into a kafka source")
}
