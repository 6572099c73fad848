package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowrt/flow/pkg/api"
)

// This file holds partition discovery: which topics and partitions a
// subtask owns, new partitions found while running, and start offsets.

// reads reports whether the config reads topic.
func (s *Source) reads(topic string) bool {
	if s.pattern != nil {
		return s.pattern.MatchString(topic)
	}
	for _, t := range s.topics {
		if t == topic {
			return true
		}
	}
	return false
}

// forgetUnread drops the restored knowledge of topics the config no
// longer reads (the JobManager restores such a snapshot only with
// --allow-non-restored-state), and notes the listed topics the snapshot
// knew nothing of.
func (s *Source) forgetUnread() {
	for t := range s.known {
		if !s.reads(t) {
			delete(s.known, t)
		}
	}
	if s.pattern != nil {
		return // a newly matching topic may have been created since: earliest
	}
	for _, t := range s.topics {
		if _, ok := s.known[t]; ok {
			continue
		}
		inSplits := false
		for _, sp := range s.restored {
			inSplits = inSplits || sp.Topic == t
		}
		if !inSplits {
			if s.listedAnew == nil {
				s.listedAnew = map[string]bool{}
			}
			s.listedAnew[t] = true
		}
	}
}

func (s *Source) initialize() error {
	s.initialized = true
	if s.hasRestored {
		s.firstDone = true
		for _, sp := range s.restored {
			s.known[sp.Topic] = max(s.known[sp.Topic], sp.Partition+1)
			s.assign(sp)
		}
		s.restored = nil
		if s.bounded {
			return nil // a bounded job reads the partitions it started with
		}
	}
	return s.discover()
}

// assign starts reading a split.
func (s *Source) assign(sp split) {
	k := tp{sp.Topic, sp.Partition}
	if _, ok := s.parts[k]; ok {
		return
	}
	p := &partState{split: sp, maxTs: api.NoTimestamp, lastActive: s.clock.Now(),
		lag: s.metrics.lag.WithLabelValues(sp.Topic, strconv.Itoa(int(sp.Partition)))}
	p.done = sp.Stop >= 0 && sp.Offset >= sp.Stop
	s.parts[k] = p
	s.order = append(s.order, p)
	sort.Slice(s.order, func(i, j int) bool {
		if s.order[i].Topic != s.order[j].Topic {
			return s.order[i].Topic < s.order[j].Topic
		}
		return s.order[i].Partition < s.order[j].Partition
	})
	if !p.done {
		s.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{sp.Topic: {sp.Partition: kgo.NewOffset().At(sp.Offset)}})
	}
	s.isIdle = false
}

// discover looks up the topics' partitions and assigns the new ones this
// subtask owns, at concrete offsets (a checkpoint taken before their first
// record continues exactly there).
func (s *Source) discover() error {
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	md, err := s.adm.Metadata(ctx, s.topicsToAsk()...)
	if err != nil {
		return fmt.Errorf("kafka source: metadata from brokers %v: %w", s.conn.brokers, err)
	}
	fresh := map[string][]int32{}
	for _, t := range md.Topics.Sorted() {
		if t.Err != nil || t.IsInternal || (s.pattern != nil && !s.pattern.MatchString(t.Topic)) {
			if t.Err != nil && s.pattern == nil {
				return fmt.Errorf("kafka source: topic %q: %w", t.Topic, t.Err)
			}
			continue
		}
		n := int32(len(t.Partitions))
		for p := s.known[t.Topic]; p < n; p++ {
			if owner(t.Topic, p, s.par) == s.subtask {
				fresh[t.Topic] = append(fresh[t.Topic], p)
			}
		}
		s.known[t.Topic] = max(s.known[t.Topic], n)
	}
	// The partitions of the first start, and topics listed anew in a
	// restored job, start at startingOffsets; partitions and topics
	// created while the job runs (or since its snapshot) at the earliest.
	first := !s.firstDone
	anew := s.listedAnew
	s.firstDone, s.listedAnew = true, nil
	if len(fresh) == 0 {
		return nil
	}
	byStart := map[int64][]string{}
	for t := range fresh {
		at := startEarliest
		if first || anew[t] {
			at = s.start
		}
		byStart[at] = append(byStart[at], t)
	}
	topics := make([]string, 0, len(fresh))
	offs := map[string]map[int32]int64{}
	for at, ts := range byStart {
		sort.Strings(ts)
		o, err := s.listOffsets(ctx, at, ts)
		if err != nil {
			return err
		}
		for t, m := range o {
			offs[t] = m
		}
		topics = append(topics, ts...)
	}
	sort.Strings(topics)
	var stops kadm.ListedOffsets
	if s.bounded && first {
		if stops, err = s.listEnd(ctx, topics); err != nil {
			return err
		}
	}
	for _, t := range topics {
		for _, p := range fresh[t] {
			o, ok := offs[t][p]
			if !ok {
				return fmt.Errorf("kafka source: no start offset for topic %s partition %d", t, p)
			}
			sp := split{V: splitVersion, Topic: t, Partition: p, Offset: o, Stop: -1}
			if s.bounded {
				sp.Stop = o // partitions appearing later in a bounded job are not read
				if first {
					sp.Stop = stops[t][p].Offset
				}
			}
			s.assign(sp)
		}
	}
	return nil
}

func (s *Source) topicsToAsk() []string {
	if s.pattern != nil {
		return nil // every topic
	}
	return s.topics
}

// listEnd lists the latest offsets (the last stable ones under
// read_committed).
func (s *Source) listEnd(ctx context.Context, topics []string) (kadm.ListedOffsets, error) {
	var lo kadm.ListedOffsets
	var err error
	if s.committed {
		lo, err = s.adm.ListCommittedOffsets(ctx, topics...)
	} else {
		lo, err = s.adm.ListEndOffsets(ctx, topics...)
	}
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka source: list latest offsets of %v: %w", topics, err)
	}
	return lo, nil
}

// listOffsets resolves a start spec to concrete offsets.
func (s *Source) listOffsets(ctx context.Context, start int64, topics []string) (map[string]map[int32]int64, error) {
	out := map[string]map[int32]int64{}
	put := func(lo kadm.ListedOffsets) {
		lo.Each(func(o kadm.ListedOffset) {
			if out[o.Topic] == nil {
				out[o.Topic] = map[int32]int64{}
			}
			out[o.Topic][o.Partition] = o.Offset
		})
	}
	earliest, err := s.adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = earliest.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka source: list earliest offsets of %v: %w", topics, err)
	}
	put(earliest)
	switch {
	case start == startEarliest:
	case start == startLatest:
		lo, err := s.listEnd(ctx, topics)
		if err != nil {
			return nil, err
		}
		put(lo)
	case start == startCommitted:
		resp, err := s.adm.FetchOffsets(ctx, s.group)
		if err == nil {
			err = resp.Error()
		}
		if errors.Is(err, kerr.GroupIDNotFound) {
			break // a group that never committed: earliest
		}
		if err != nil {
			return nil, fmt.Errorf("kafka source: committed offsets of group %q: %w", s.group, err)
		}
		resp.Each(func(o kadm.OffsetResponse) {
			if out[o.Topic] != nil && o.At >= 0 {
				out[o.Topic][o.Partition] = o.At
			}
		})
	default:
		lo, err := s.adm.ListOffsetsAfterMilli(ctx, start, topics...)
		if err == nil {
			err = lo.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("kafka source: offsets after %d ms: %w", start, err)
		}
		end, err := s.listEnd(ctx, topics)
		if err != nil {
			return nil, err
		}
		lo.Each(func(o kadm.ListedOffset) {
			if o.Offset < 0 { // no record at or after the time: start at the end
				o.Offset = end[o.Topic][o.Partition].Offset
			}
			out[o.Topic][o.Partition] = o.Offset
		})
	}
	return out, nil
}
