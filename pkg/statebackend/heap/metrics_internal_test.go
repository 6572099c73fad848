package heap

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/flowrt/flow/pkg/statebackend"
)

// walkHeld recomputes what storeMetrics.held tracks: the cell keys, the
// out-of-line values and the map entries of every live slot.
func walkHeld(s *store) (held, cells int64) {
	for _, st := range s.states {
		if st == nil {
			continue
		}
		for _, m := range st.idx {
			for _, i := range m {
				sl := st.at(i)
				held += int64(len(sl.key)) + outOfLineBytes(sl)
				for k, e := range sl.entries() {
					held += int64(len(k) + len(e.v))
				}
				cells++
			}
		}
	}
	return held, cells
}

// The bytes the heap store reports follow every kind of write, through
// copy-on-write views and compactions.
func TestStoreMetricsBytes(t *testing.T) {
	e, err := New(statebackend.Options{MaxParallelism: 8})
	if err != nil {
		t.Fatal(err)
	}
	s := e.Store().(*store)
	rng := rand.New(rand.NewPCG(1, 2))
	val := func() []byte { return make([]byte, rng.IntN(3)*25) } // 0, 25 (inline) or 50 bytes
	var views []statebackend.StoreView
	for step := range 30000 {
		k := fmt.Sprintf("k%d", rng.IntN(3000))
		c := &statebackend.Cell{State: uint16(rng.IntN(2)), KeyGroup: rng.IntN(8), Key: []byte(k)}
		var err error
		if c.State == 0 { // value and list cells
			switch rng.IntN(4) {
			case 0, 1:
				err = s.Set(c, val())
			case 2:
				err = s.Append(c, val())
			default:
				err = s.Delete(c)
			}
		} else { // map cells
			uk := []byte(fmt.Sprintf("u%d", rng.IntN(4)))
			switch rng.IntN(5) {
			case 0, 1, 2:
				err = s.SetEntry(c, uk, val())
			case 3:
				err = s.DeleteEntry(c, uk)
			default:
				err = s.DeleteEntries(c)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if step%997 == 0 {
			v, err := s.View()
			if err != nil {
				t.Fatal(err)
			}
			views = append(views, v)
			if len(views) > 2 {
				views[0].Release()
				views = views[1:]
			}
		}
		if step%5000 == 4999 { // delete most keys: compactions
			for i := range 3000 {
				if i%10 != 0 {
					for kg := range 8 {
						c := &statebackend.Cell{KeyGroup: kg, Key: []byte(fmt.Sprintf("k%d", i))}
						if err := s.Delete(c); err != nil {
							t.Fatal(err)
						}
						c.State = 1
						if err := s.DeleteEntries(c); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
		if step%1000 == 0 || step%5000 == 4999 {
			held, cells := walkHeld(s)
			if s.mx.held != held {
				t.Fatalf("step %d: tracked %d bytes, the store holds %d", step, s.mx.held, held)
			}
			s.PublishMetrics()
			if m := s.StoreMetrics(); m.Keys != cells || m.Bytes < held {
				t.Fatalf("step %d: reported %+v; %d cells, %d bytes held", step, m, cells, held)
			}
		}
	}
	for _, v := range views {
		v.Release()
	}
}
