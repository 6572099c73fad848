package scheduler

import (
	"errors"
	"testing"
)

func TestAllocateSlotsSpreadsAcrossTaskManagers(t *testing.T) {
	got, err := Allocate(4, []Offer{{"tm-b", 4}, {"tm-a", 4}})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, tm := range got {
		count[tm]++
	}
	if count["tm-a"] != 2 || count["tm-b"] != 2 {
		t.Fatalf("slots not spread evenly: %v", got)
	}
}

func TestAllocateSlotsSpreadsThenFillsTheEmptiest(t *testing.T) {
	got, err := Allocate(5, []Offer{{"tm-a", 1}, {"tm-b", 4}, {"tm-c", 2}})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, tm := range got {
		count[tm]++
	}
	// One on each first; then tm-a is full and b and c get one more each.
	if count["tm-a"] != 1 || count["tm-b"] != 2 || count["tm-c"] != 2 {
		t.Fatalf("want a=1 b=2 c=2, got %v", got)
	}
}

func TestAllocateSlotsNotEnough(t *testing.T) {
	_, err := Allocate(5, []Offer{{"tm-a", 2}, {"tm-b", 2}})
	if !errors.Is(err, ErrNotEnoughSlots) {
		t.Fatalf("want ErrNotEnoughSlots, got %v", err)
	}
	_, err = Allocate(1, nil)
	if !errors.Is(err, ErrNotEnoughSlots) {
		t.Fatalf("no TaskManagers: want ErrNotEnoughSlots, got %v", err)
	}
}

func TestAllocateSlotsDeterministic(t *testing.T) {
	offers := []Offer{{"tm-c", 3}, {"tm-a", 3}, {"tm-b", 3}}
	first, _ := Allocate(7, offers)
	for i := 0; i < 10; i++ {
		again, _ := Allocate(7, offers)
		for j := range first {
			if first[j] != again[j] {
				t.Fatalf("allocation changed between runs: %v vs %v", first, again)
			}
		}
	}
}
