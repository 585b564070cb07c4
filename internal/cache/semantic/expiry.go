package semantic

// expiryHeap is a min-heap of entries by expiry (ties: the older entry
// first), so its root is the entry to evict first: expired if any is, else
// the one with the least life left. entry.heapAt tracks positions for
// removal.
type expiryHeap []*entry

func (h expiryHeap) less(i, j int) bool {
	if h[i].expires.Equal(h[j].expires) {
		return h[i].id < h[j].id
	}
	return h[i].expires.Before(h[j].expires)
}

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapAt = i
	h[j].heapAt = j
}

func (h *expiryHeap) push(e *entry) {
	e.heapAt = len(*h)
	*h = append(*h, e)
	h.up(e.heapAt)
}

func (h *expiryHeap) remove(e *entry) {
	i, last := e.heapAt, len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	if i != last {
		h.down(i)
		h.up(i)
	}
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h expiryHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		c := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h.swap(i, c)
		i = c
	}
}
