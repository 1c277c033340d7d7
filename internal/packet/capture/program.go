package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Program builds a classic BPF program with symbolic jump targets, so that
// a filter can be read and changed without counting instructions by hand.
// Jumps go forward only, as BPF's do.
type Program struct {
	ins    []bpf.Instruction
	jumps  map[int][2]string // instruction index → true/false target labels
	labels map[string]int
}

// NewProgram returns an empty program.
func NewProgram() *Program {
	return &Program{jumps: map[int][2]string{}, labels: map[string]int{}}
}

// Add appends instructions.
func (p *Program) Add(ins ...bpf.Instruction) { p.ins = append(p.ins, ins...) }

// Label names the position of the next instruction.
func (p *Program) Label(name string) { p.labels[name] = len(p.ins) }

// JumpEqual jumps to label t when A == v, else to label f; "" is the next
// instruction.
func (p *Program) JumpEqual(v uint32, t, f string) { p.jump(bpf.JumpEqual, v, t, f) }

// JumpBitsSet jumps to label t when A & v != 0, else to label f.
func (p *Program) JumpBitsSet(v uint32, t, f string) { p.jump(bpf.JumpBitsSet, v, t, f) }

func (p *Program) jump(c bpf.JumpTest, v uint32, t, f string) {
	p.jumps[len(p.ins)] = [2]string{t, f}
	p.Add(bpf.JumpIf{Cond: c, Val: v})
}

// Instructions resolves the jumps and returns the program.
func (p *Program) Instructions() ([]bpf.Instruction, error) {
	skip := func(from int, label string) (uint8, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := p.labels[label]
		if !ok || to <= from || to-from-1 > 255 {
			return 0, fmt.Errorf("bad jump from instruction %d to %q", from, label)
		}
		return uint8(to - from - 1), nil
	}
	out := append([]bpf.Instruction(nil), p.ins...)
	for i, targets := range p.jumps {
		j := out[i].(bpf.JumpIf)
		var err error
		if j.SkipTrue, err = skip(i, targets[0]); err != nil {
			return nil, err
		}
		if j.SkipFalse, err = skip(i, targets[1]); err != nil {
			return nil, err
		}
		out[i] = j
	}
	return out, nil
}
