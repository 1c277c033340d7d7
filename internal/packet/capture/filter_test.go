package capture

import (
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

// The direction and mark tests come before the program and drop by
// jumping to a final ret #0; the program itself runs unchanged.
func TestFilterAssemble(t *testing.T) {
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 1},
		bpf.RetConstant{Val: 100},
		bpf.RetConstant{Val: 0},
	}
	for _, tc := range []struct {
		f    Filter
		want []bpf.Instruction
	}{
		{Filter{}, []bpf.Instruction{bpf.RetConstant{Val: SnapLen}, bpf.RetConstant{Val: 0}}},
		{Filter{Program: prog}, append(append([]bpf.Instruction{}, prog...), bpf.RetConstant{Val: 0})},
		{Filter{Program: prog, Direction: Outgoing, SkipMark: 0x10}, append([]bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipTrue: 0, SkipFalse: 7}, // not outgoing: drop
			bpf.LoadExtension{Num: bpf.ExtMark},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x10},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x10, SkipTrue: 4}, // marked: drop
		}, append(append([]bpf.Instruction{}, prog...), bpf.RetConstant{Val: 0})...)},
		{Filter{Direction: Incoming}, []bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipTrue: 1}, // outgoing: drop
			bpf.RetConstant{Val: SnapLen},
			bpf.RetConstant{Val: 0},
		}},
	} {
		raw, err := tc.f.Assemble()
		if err != nil {
			t.Fatal(err)
		}
		want, err := bpf.Assemble(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != len(want) {
			t.Fatalf("%+v: %d instructions, want %d", tc.f, len(raw), len(want))
		}
		for i := range raw {
			if raw[i] != want[i] {
				t.Errorf("%+v: instruction %d is %v, want %v", tc.f, i, raw[i].Disassemble(), tc.want[i])
			}
		}
	}
	if _, err := (Filter{Direction: 7}).Assemble(); err == nil {
		t.Error("unknown direction assembled")
	}
	long := make([]bpf.Instruction, 300)
	for i := range long {
		long[i] = bpf.RetConstant{Val: 0}
	}
	if _, err := (Filter{Program: long, Direction: Outgoing}).Assemble(); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("a program too long to jump over: %v", err)
	}
}

func TestProgramLabels(t *testing.T) {
	p := NewProgram()
	p.Add(bpf.LoadAbsolute{Off: 12, Size: 2})
	p.JumpEqual(0x0800, "yes", "")
	p.JumpBitsSet(1, "", "no")
	p.Label("yes")
	p.Add(bpf.RetConstant{Val: 1})
	p.Label("no")
	p.Add(bpf.RetConstant{Val: 0})
	ins, err := p.Instructions()
	if err != nil {
		t.Fatal(err)
	}
	if j := ins[1].(bpf.JumpIf); j.SkipTrue != 1 || j.SkipFalse != 0 {
		t.Errorf("jump to yes: %+v", j)
	}
	if j := ins[2].(bpf.JumpIf); j.SkipTrue != 0 || j.SkipFalse != 1 {
		t.Errorf("jump to no: %+v", j)
	}
	p.JumpEqual(1, "nowhere", "")
	if _, err := p.Instructions(); err == nil {
		t.Error("a jump to an unknown label resolved")
	}
	back := NewProgram()
	back.Label("top")
	back.JumpEqual(1, "top", "")
	if _, err := back.Instructions(); err == nil {
		t.Error("a backward jump resolved")
	}
}
