package provider

import (
	"fmt"
	"io"
	"net/url"
	"sync"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// CheckBaseURL validates the base_url of provider name: an absolute http(s)
// URL without credentials, query or fragment. It returns the parsed URL.
func CheckBaseURL(name, raw string) (*url.URL, error) {
	u, err := CheckBaseURLAllowQuery(name, raw)
	if err != nil {
		return nil, err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("provider %q: base_url must not have a query or fragment", name)
	}
	return u, nil
}

// CheckBaseURLAllowQuery is [CheckBaseURL] without the query and fragment
// check: providers that have always accepted them (Cohere, OpenAI
// compatible) keep doing so.
func CheckBaseURLAllowQuery(name, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("provider %q: base_url must be an absolute http(s) URL", name)
	}
	if u.User != nil {
		return nil, fmt.Errorf("provider %q: base_url must not contain credentials; use api_key", name)
	}
	return u, nil
}

var sseReaderPool = sync.Pool{New: func() any { return sse.NewReader(nil, 0) }}

// GetSSEReader returns a pooled event reader (default event size limit)
// reading r. Give it back with [PutSSEReader] when the stream is closed.
func GetSSEReader(r io.Reader) *sse.Reader {
	rd := sseReaderPool.Get().(*sse.Reader)
	rd.Reset(r)
	return rd
}

// PutSSEReader detaches rd from its source and returns it to the pool. rd
// must not be used afterwards.
func PutSSEReader(rd *sse.Reader) {
	rd.Reset(nil)
	sseReaderPool.Put(rd)
}
