package mudfetch

import "errors"

// maxASN1Depth bounds the nesting of a signature's ASN.1 structure; real CMS
// signatures nest about a dozen levels.
const maxASN1Depth = 64

// checkBERStructure walks the tag-length-value structure of a BER/DER
// element in linear time and accepts it only if it is exactly one element
// whose constructed parts are tiled exactly by their children. The pkcs7
// library's BER-to-DER conversion re-reads overlapping children and takes
// exponential time on such input (found by FuzzVerify), so a hostile MUD
// server could otherwise hold a fetch worker forever.
func checkBERStructure(b []byte) error {
	end, err := walkBER(b, 0, 0)
	if err != nil {
		return err
	}
	if end != len(b) {
		return errors.New("trailing data after the signature")
	}
	return nil
}

// walkBER checks the element at off and returns the offset just after it.
func walkBER(b []byte, off, depth int) (int, error) {
	if depth > maxASN1Depth {
		return 0, errors.New("ASN.1 nesting too deep")
	}
	if off >= len(b) {
		return 0, errors.New("truncated ASN.1 element")
	}
	constructed := b[off]&0x20 != 0
	if b[off]&0x1f == 0x1f { // high tag number form
		off++
		for off < len(b) && b[off] >= 0x80 {
			off++
		}
	}
	off++
	if off >= len(b) {
		return 0, errors.New("truncated ASN.1 header")
	}
	l := int(b[off])
	off++
	if l == 0x80 { // indefinite length: children up to an end-of-contents marker
		if !constructed {
			return 0, errors.New("indefinite length on a primitive element")
		}
		if off+1 < len(b) && b[off] == 0 && b[off+1] == 0 {
			return 0, errors.New("empty indefinite-length element")
		}
		for {
			var err error
			if off, err = walkBER(b, off, depth+1); err != nil {
				return 0, err
			}
			if off+1 >= len(b) {
				return 0, errors.New("unterminated indefinite-length element")
			}
			if b[off] == 0 && b[off+1] == 0 {
				return off + 2, nil
			}
		}
	}
	if l > 0x80 {
		n := l & 0x7f
		if n > 4 || off+n > len(b) || b[off] == 0 || (n == 4 && b[off] > 0x7f) {
			return 0, errors.New("invalid ASN.1 length")
		}
		l = 0
		for range n {
			l = l<<8 | int(b[off])
			off++
		}
	}
	end := off + l
	if end > len(b) {
		return 0, errors.New("ASN.1 length beyond the data")
	}
	if !constructed {
		return end, nil
	}
	for off < end {
		var err error
		if off, err = walkBER(b, off, depth+1); err != nil {
			return 0, err
		}
	}
	if off != end {
		return 0, errors.New("ASN.1 element overruns its parent")
	}
	return end, nil
}
