package kafka

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/flowrt/flow/pkg/api"
)

// checkRestore is the source's api.OperatorType.CheckRestore: it decodes
// the snapshot's splits (topic, partition, offset) and partition counts
// and compares the topics holding offsets with the new config's topics or
// topicPattern. A topic with offsets that the config no longer reads is
// Removed (the JobManager refuses the restore unless
// --allow-non-restored-state; the source then drops its offsets); a listed
// topic the snapshot does not know is Added (it starts at
// startingOffsets). It contacts no broker.
func checkRestore(v api.RestoreView) (api.RestoreCheck, error) {
	var rc api.RestoreCheck
	topics := v.Config.StringList("topics")
	var pattern *regexp.Regexp
	if p := v.Config.String("topicPattern"); p != "" {
		re, err := regexp.Compile("^(?:" + p + ")$")
		if err != nil {
			return rc, fmt.Errorf("kafka source: topicPattern: %w", err)
		}
		pattern = re
		rc.Now = "topicPattern " + p
	} else {
		rc.Now = "topics [" + strings.Join(topics, ", ") + "]"
	}
	reads := func(t string) bool {
		if pattern != nil {
			return pattern.MatchString(t)
		}
		for _, x := range topics {
			if x == t {
				return true
			}
		}
		return false
	}
	streams := map[string]*api.RestoredStream{}
	stream := func(t string) *api.RestoredStream {
		s := streams[t]
		if s == nil {
			s = &api.RestoredStream{Name: t, Partitions: []api.RestoredPartition{}}
			streams[t] = s
		}
		return s
	}
	for _, sp := range v.Splits {
		d, err := decodeSplit(sp.Data)
		if err != nil {
			return rc, err
		}
		s := stream(d.Topic)
		s.Partitions = append(s.Partitions, api.RestoredPartition{Partition: d.Partition, Offset: d.Offset, Stop: d.Stop, Subtask: sp.Subtask})
	}
	for i, b := range v.ListStates[knownState] {
		var e knownElem
		if err := json.Unmarshal(b, &e); err != nil || e.V != 1 {
			return rc, fmt.Errorf("kafka source: partition list element %d %q: want format 1 (restore with a newer Flow?)", i, b)
		}
		for t, n := range e.Topics {
			s := stream(t)
			s.Known = max(s.Known, n)
		}
	}
	names := make([]string, 0, len(streams))
	for t := range streams {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		s := streams[t]
		sort.Slice(s.Partitions, func(i, j int) bool { return s.Partitions[i].Partition < s.Partitions[j].Partition })
		rc.Streams = append(rc.Streams, *s)
		if len(s.Partitions) > 0 && !reads(t) {
			rc.Removed = append(rc.Removed, t)
		}
	}
	if pattern == nil {
		for _, t := range topics {
			if streams[t] == nil {
				rc.Added = append(rc.Added, t)
			}
		}
	} else {
		rc.Notes = append(rc.Notes, "topics that match topicPattern and have no offsets in the snapshot are read from their earliest offset")
	}
	if len(rc.Added) > 0 && v.Config.String("stoppingOffsets") == "latest" {
		rc.Notes = append(rc.Notes, "a restored bounded source (stoppingOffsets: latest) reads only the partitions it started with: the added topics are not read")
	}
	return rc, nil
}
