package fakellm

import (
	"encoding/json"
	"net/http"
	"slices"
)

// modelCreated is the fixed "created" timestamp of listed models.
const modelCreated = 1700000000

// modelObject is a model as listed by the models API.
// https://platform.openai.com/docs/api-reference/models/object
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// models returns the sorted ids of the scripted models plus [DefaultModel].
func (s *Server) models() []string {
	s.mu.Lock()
	ids := make([]string, 0, len(s.scripts)+1)
	ids = append(ids, DefaultModel)
	for m := range s.scripts {
		if m != "" && m != DefaultModel {
			ids = append(ids, m)
		}
	}
	s.mu.Unlock()
	slices.Sort(ids)
	return ids
}

func (s *Server) modelObject(id string) modelObject {
	return modelObject{ID: id, Object: "model", Created: modelCreated, OwnedBy: s.opts.Name}
}

// serveModels answers GET /v1/models.
// https://platform.openai.com/docs/api-reference/models/list
func (s *Server) serveModels(w http.ResponseWriter) {
	ids := s.models()
	list := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list", Data: make([]modelObject, len(ids))}
	for i, id := range ids {
		list.Data[i] = s.modelObject(id)
	}
	writeJSONValue(w, list)
}

// serveModel answers GET /v1/models/{id}: the model object for listed
// models, 404 model_not_found otherwise.
// https://platform.openai.com/docs/api-reference/models/retrieve
func (s *Server) serveModel(x *exchange, id string) {
	if !slices.Contains(s.models(), id) {
		x.writeError(http.StatusNotFound, "The model '"+id+"' does not exist", "model", "model_not_found")
		return
	}
	writeJSONValue(x.w, s.modelObject(id))
}

func writeJSONValue(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
