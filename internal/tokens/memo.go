package tokens

import (
	"hash/maphash"
	"sync"
)

// memo remembers the exact counts of recent texts, so that what requests
// repeat (system prompts, the history of a conversation resent each turn)
// is encoded once. It is keyed by the encoding and a 64-bit hash of the
// text, sharded, and bounded: a full shard is emptied.
var memo memoTable

const (
	memoShards   = 16
	memoPerShard = 1024
	// memoMinBytes: shorter texts cost less to encode than to remember.
	memoMinBytes = 64
)

type memoTable struct {
	seed   maphash.Seed
	once   sync.Once
	shards [memoShards]memoShard
}

type memoShard struct {
	mu sync.Mutex
	m  map[uint64]int32
}

func (t *memoTable) key(e Encoding, s string) uint64 {
	t.once.Do(func() { t.seed = maphash.MakeSeed() })
	return maphash.String(t.seed, s) ^ uint64(e)<<56
}

func (t *memoTable) get(k uint64) (int, bool) {
	sh := &t.shards[k%memoShards]
	sh.mu.Lock()
	n, ok := sh.m[k]
	sh.mu.Unlock()
	return int(n), ok
}

func (t *memoTable) put(k uint64, n int) {
	sh := &t.shards[k%memoShards]
	sh.mu.Lock()
	if sh.m == nil || len(sh.m) >= memoPerShard {
		sh.m = make(map[uint64]int32, memoPerShard)
	}
	sh.m[k] = int32(n)
	sh.mu.Unlock()
}

// reset forgets every count (benchmarks of the cold path).
func (t *memoTable) reset() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.m = nil
		sh.mu.Unlock()
	}
}
