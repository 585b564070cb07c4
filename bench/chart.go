package main

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writeChart draws the req/s of every target as grouped bars, one group per
// target and one bar per kind, and saves it as a PNG at path.
func writeChart(path, title string, results []*result) error {
	var targets, kinds []string
	rps := map[[2]string]float64{}
	for _, r := range results {
		if !slices.Contains(targets, r.Target) {
			targets = append(targets, r.Target)
		}
		if !slices.Contains(kinds, r.Kind) {
			kinds = append(kinds, r.Kind)
		}
		rps[[2]string{r.Target, r.Kind}] = r.RPS()
	}

	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "requests per second"
	p.Y.Min = 0
	colors := []color.Color{
		color.RGBA{R: 0x3b, G: 0x75, B: 0xaf, A: 0xff},
		color.RGBA{R: 0xef, G: 0x85, B: 0x36, A: 0xff},
		color.RGBA{R: 0x51, G: 0x9e, B: 0x3e, A: 0xff},
	}
	w := vg.Points(22)
	for i, k := range kinds {
		vals := make(plotter.Values, len(targets))
		for j, t := range targets {
			vals[j] = rps[[2]string{t, k}]
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		bars.LineStyle.Width = 0
		bars.Color = colors[i%len(colors)]
		bars.Offset = w * vg.Length(float64(i)-float64(len(kinds)-1)/2)
		p.Add(bars)
		p.Legend.Add(k, bars)
	}
	p.Legend.Top = true
	p.NominalX(targets...)
	p.X.Tick.Label.Rotation = 0.35
	p.X.Tick.Label.XAlign = -0.9
	width := vg.Length(max(len(targets), 4)) * 1.6 * vg.Inch
	if err := p.Save(width, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}
