package semantic

import (
	"sort"
	"strings"
)

// The gate's word lists. They are English-centric, with the negators of a
// few other European languages; texts in scripts without letter case are
// handled apart (see analyse). All entries are lower case.

// negators are words that negate or exclude. Contractions ending in n't are
// recognised by their suffix; the apostrophe-less spellings are listed.
var negators = set(`
	not no never none nobody nothing nowhere neither nor without cannot
	except excluding besides hardly barely rarely seldom lack lacks lacking missing non
	dont doesnt didnt isnt arent wasnt werent cant wont wouldnt shouldnt couldnt
	havent hasnt hadnt aint mustnt neednt mightnt
	ne pas jamais sans aucun aucune nunca sin ningun ninguno ninguna tampoco
	nicht kein keine keinen keinem keiner nie niemals ohne non mai senza
	não nao nem sem niet geen nooit zonder не нет никогда без
`)

// polarity maps a word to its class and side: words on opposite sides of
// one class ("on"/"off", "enable"/"disable") make two messages differ, and
// words on the same side ("on"/"enable") are interchangeable. Inflections
// are listed explicitly; see the inflect calls in init.
var polarity = map[string]string{}

// polarityClasses lists each class as "positive words | negative words".
var polarityClasses = map[string]string{
	"toggle":     "on enable activate | off disable deactivate",
	"start":      "start begin launch resume | stop halt end terminate",
	"pause":      "pause suspend | unpause",
	"open":       "open | close shut",
	"show":       "show display reveal unhide | hide conceal",
	"allow":      "allow permit grant whitelist allowlist | deny forbid prohibit block ban blacklist blocklist revoke",
	"include":    "include | exclude",
	"add":        "add insert create | remove delete drop",
	"increase":   "increase raise grow boost | decrease reduce shrink cut lower",
	"more":       "more | less fewer",
	"max":        "max maximum maximize maximise | min minimum minimize minimise",
	"upload":     "upload | download",
	"import":     "import | export",
	"push":       "push | pull",
	"lock":       "lock | unlock",
	"install":    "install | uninstall",
	"connect":    "connect | disconnect",
	"subscribe":  "subscribe follow | unsubscribe unfollow",
	"mute":       "mute | unmute",
	"encrypt":    "encrypt | decrypt",
	"encode":     "encode serialize serialise | decode deserialize deserialise",
	"compress":   "compress zip | decompress unzip extract",
	"buy":        "buy purchase | sell",
	"before":     "before prior | after",
	"above":      "above | below beneath",
	"inside":     "inside internal | outside external",
	"input":      "input | output",
	"positive":   "positive | negative",
	"true":       "true | false",
	"win":        "win | lose",
	"accept":     "accept approve | reject decline refuse",
	"pass":       "pass succeed | fail",
	"valid":      "valid | invalid",
	"legal":      "legal | illegal",
	"possible":   "possible | impossible",
	"safe":       "safe | unsafe dangerous",
	"healthy":    "healthy | unhealthy",
	"light":      "light | dark",
	"hot":        "hot warm | cold cool",
	"cheap":      "cheap inexpensive | expensive costly",
	"good":       "best better good | worst worse bad",
	"faster":     "faster fastest quicker quickest | slower slowest",
	"bigger":     "bigger biggest larger largest | smaller smallest",
	"higher":     "higher highest | lowest",
	"longer":     "longer longest | shorter shortest",
	"hotter":     "hotter hottest warmer warmest | colder coldest cooler coolest",
	"cheaper":    "cheaper cheapest | costlier",
	"newer":      "newer | older",
	"earlier":    "earlier earliest | latest",
	"safer":      "safer safest | riskier",
	"fast":       "fast quick | slow",
	"big":        "big large huge | small little tiny",
	"high":       "high | low",
	"long":       "long | short",
	"new":        "new newest | old oldest",
	"early":      "early | late",
	"ascending":  "ascending asc | descending desc",
	"left":       "left | right",
	"plus":       "plus sum | minus subtract difference",
	"multiply":   "multiply times product | divide quotient",
	"male":       "male man men boy boys | female woman women girl girls",
	"love":       "love enjoy | dislike hate",
	"agree":      "agree | disagree",
	"happy":      "happy | sad unhappy",
	"sunrise":    "sunrise | sunset",
	"all":        "all every everything everyone everybody | some several",
	"many":       "many | few",
	"upgrade":    "upgrade | downgrade",
	"upper":      "uppercase upper | lowercase",
	"sync":       "sync synchronous synchronously | async asynchronous asynchronously",
	"public":     "public | private",
	"online":     "online | offline",
	"horizontal": "horizontal horizontally | vertical vertically",
}

// toggleVerbs make a following "on" a switch rather than a preposition.
var toggleVerbs = set(`turn turned turning turns switch switched switching toggle toggled set put flip keep leave`)

// temporal words anchor a message in time; two messages must use the same
// ones.
var temporal = set(`
	today tonight tomorrow yesterday now currently current next last previous
	ago later soon recently recent past future morning afternoon evening night
	weekend weekday daily weekly monthly yearly annually hourly quarterly
`)

// numberWords spell small numbers; scales multiply; plural scales stand for
// an order of magnitude ("thousands of users").
var (
	numberWords = map[string]int64{
		"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
		"six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
		"eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
		"fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
		"nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
		"fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
		"dozen": 12, "twice": 2, "thrice": 3,
	}
	scaleWords = map[string]int64{
		"hundred": 100, "thousand": 1_000, "million": 1_000_000,
		"billion": 1_000_000_000, "trillion": 1_000_000_000_000,
	}
	pluralScales = map[string]string{
		"hundreds": "~100", "thousands": "~1000", "millions": "~1000000",
		"billions": "~1000000000", "dozens": "~12",
	}
	ordinalWords = map[string]string{
		"first": "#1", "third": "#3", "fourth": "#4", "fifth": "#5",
		"sixth": "#6", "seventh": "#7", "eighth": "#8", "ninth": "#9",
		"tenth": "#10", "eleventh": "#11", "twelfth": "#12", "twentieth": "#20",
		"hundredth": "#100",
	}
	fractionWords = map[string]string{"half": "0.5", "quarter": "0.25"}
)

// units maps a unit or currency spelling to its canonical name. Spellings
// in shortUnits are units only right after a number ("5 m", "5m").
var units = map[string]string{}

var unitSpellings = map[string]string{
	"km":      "km kms kilometer kilometers kilometre kilometres",
	"m":       "m meter meters metre metres",
	"cm":      "cm centimeter centimeters centimetre centimetres",
	"mm":      "mm millimeter millimeters millimetre millimetres",
	"mi":      "mi mile miles",
	"ft":      "ft foot feet",
	"in":      "inch inches",
	"yd":      "yd yard yards",
	"kg":      "kg kgs kilo kilos kilogram kilograms kilogramme kilogrammes",
	"g":       "g gram grams gramme grammes",
	"mg":      "mg milligram milligrams",
	"lb":      "lb lbs pound pounds",
	"oz":      "oz ounce ounces",
	"st":      "stone stones",
	"l":       "l liter liters litre litres",
	"ml":      "ml milliliter milliliters millilitre millilitres",
	"gal":     "gal gallon gallons",
	"cup":     "cup cups",
	"tbsp":    "tbsp tablespoon tablespoons",
	"tsp":     "tsp teaspoon teaspoons",
	"pt":      "pint pints",
	"°c":      "°c c celsius centigrade",
	"°f":      "°f f fahrenheit",
	"k":       "k kelvin",
	"mph":     "mph",
	"kph":     "kph kmh km/h",
	"ms":      "ms millisecond milliseconds",
	"s":       "s sec secs second seconds",
	"min":     "mins minute minutes",
	"h":       "h hr hrs hour hours",
	"day":     "day days",
	"week":    "week weeks",
	"mo":      "month months",
	"yr":      "yr yrs year years",
	"decade":  "decade decades",
	"century": "century centuries",
	"b":       "byte bytes",
	"bit":     "bit bits",
	"kb":      "kb kilobyte kilobytes",
	"mb":      "mb megabyte megabytes",
	"gb":      "gb gigabyte gigabytes",
	"tb":      "tb terabyte terabytes",
	"kib":     "kib", "mib": "mib", "gib": "gib", "tib": "tib",
	"kbps": "kbps", "mbps": "mbps", "gbps": "gbps",
	"hz": "hz hertz", "khz": "khz", "mhz": "mhz", "ghz": "ghz",
	"w": "w watt watts", "kw": "kw kilowatt kilowatts", "kwh": "kwh",
	"v": "v volt volts", "a": "amp amps ampere amperes",
	"cal": "cal calorie calories kcal",
	"%":   "% percent percentage pct",
	"x":   "x",
	"am":  "am a.m", "pm": "pm p.m",
	"usd": "usd $ dollar dollars buck bucks",
	"eur": "eur € euro euros",
	"gbp": "gbp £ sterling quid",
	"jpy": "jpy ¥ yen",
	"cny": "cny rmb yuan renminbi",
	"inr": "inr ₹ rupee rupees",
	"chf": "chf franc francs",
	"cad": "cad", "aud": "aud", "mxn": "mxn peso pesos",
	"krw":  "krw ₩ won",
	"rub":  "rub ₽ ruble rubles rouble roubles",
	"btc":  "btc bitcoin bitcoins ₿",
	"eth":  "eth ether",
	"cent": "cent cents",
	"sqft": "sqft", "acre": "acre acres", "hectare": "hectare hectares ha",
}

// shortUnits are unit spellings too common as words ("a", "in", "won") or
// letters ("m", "s") to count unless a number precedes them.
var shortUnits = set(`m g l s h k a w v x b c f am pm st ha won mi min second seconds`)

// gazetteer holds names that are entities however they are capitalised:
// programming languages and tools, countries, cities, languages, months,
// days, compass points, colours. Words that are common English words in
// lower case ("go", "rust", "swift", "may", "china" as porcelain is rare
// enough to keep) are left to the capitalisation rule.
var gazetteer = set(`
	python java javascript typescript golang kotlin scala haskell elixir erlang clojure
	ruby php perl lua julia matlab fortran cobol pascal ocaml fsharp csharp c++ c# f# zig
	dart bash zsh powershell sql nosql html css json yaml toml xml graphql grpc
	react vue angular svelte django flask fastapi rails laravel spring nodejs node.js deno
	docker kubernetes k8s terraform ansible helm git github gitlab bitbucket jenkins
	postgres postgresql mysql sqlite mariadb redis mongodb cassandra kafka rabbitmq elasticsearch
	nginx apache caddy linux ubuntu debian fedora centos arch windows macos osx ios android
	chrome firefox safari edge excel outlook slack zoom jira notion figma
	aws azure gcp heroku vercel netlify cloudflare openai anthropic gpt claude gemini llama
	iphone ipad macbook pixel samsung google apple microsoft amazon meta netflix tesla
	france spain italy germany portugal netherlands belgium switzerland austria poland
	sweden norway denmark finland ireland greece turkey russia ukraine england scotland wales
	britain uk usa america canada mexico brazil argentina chile peru colombia
	china japan korea india pakistan bangladesh indonesia vietnam thailand philippines
	australia zealand egypt nigeria kenya morocco israel iran iraq
	paris madrid barcelona rome milan berlin munich lisbon amsterdam brussels vienna zurich
	geneva london dublin edinburgh prague warsaw budapest athens istanbul moscow stockholm
	oslo copenhagen helsinki tokyo osaka kyoto seoul beijing shanghai delhi mumbai bangalore
	singapore bangkok sydney melbourne toronto vancouver montreal nyc chicago boston seattle
	sf lax denver austin dallas houston miami atlanta
	english spanish french german italian portuguese dutch swedish polish russian ukrainian
	chinese mandarin cantonese japanese korean hindi arabic hebrew turkish greek vietnamese
	january february march april june july august september october november december
	jan feb mar apr jun jul aug sep sept oct nov dec
	monday tuesday wednesday thursday friday saturday sunday
	north south east west northern southern eastern western northeast northwest southeast southwest
	red blue green yellow black white orange purple pink brown gray grey silver gold
	mercury venus earth mars jupiter saturn uranus neptune pluto
	spring summer autumn fall winter
`)

// sentenceStarters are not entities when capitalised mid-sentence either
// (Title Case headings, "I").
var notEntities = set(`i i'm i'd i've i'll`)

func set(words string) map[string]bool {
	m := make(map[string]bool)
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

func init() {
	// Listed words first, then their inflections where no listed word
	// claims the form; classes in sorted order, so the result does not
	// depend on map order.
	classes := make([]string, 0, len(polarityClasses))
	for class := range polarityClasses {
		classes = append(classes, class)
	}
	sort.Strings(classes)
	for _, inflections := range []bool{false, true} {
		for _, class := range classes {
			pos, neg, _ := strings.Cut(polarityClasses[class], "|")
			for _, w := range strings.Fields(pos) {
				register(w, class+"+", inflections)
			}
			for _, w := range strings.Fields(neg) {
				register(w, class+"-", inflections)
			}
		}
	}
	for canon, spellings := range unitSpellings {
		for _, s := range strings.Fields(spellings) {
			units[s] = canon
		}
	}
}

// register records w under class or, with inflections, its regular
// inflections, keeping an existing registration.
func register(w, class string, inflections bool) {
	if !inflections {
		if _, ok := polarity[w]; !ok {
			polarity[w] = class
		}
		return
	}
	forms := []string{w + "s", w + "ed", w + "ing"}
	n := len(w)
	switch {
	case strings.HasSuffix(w, "e"):
		forms = append(forms, w+"d", w[:n-1]+"ing")
	case strings.HasSuffix(w, "y"):
		forms = append(forms, w[:n-1]+"ies", w[:n-1]+"ied")
	case strings.HasSuffix(w, "s"), strings.HasSuffix(w, "sh"), strings.HasSuffix(w, "ch"), strings.HasSuffix(w, "x"), strings.HasSuffix(w, "z"):
		forms = append(forms, w+"es")
	}
	// Doubled final consonant: stop → stopped, stopping.
	if n >= 3 && !isVowel(w[n-1]) && w[n-1] != 'w' && w[n-1] != 'x' && w[n-1] != 'y' && isVowel(w[n-2]) && !isVowel(w[n-3]) {
		d := w + w[n-1:]
		forms = append(forms, d+"ed", d+"ing")
	}
	for _, f := range forms {
		if _, ok := polarity[f]; !ok && !notInflections[f] {
			polarity[f] = class
		}
	}
}

// notInflections are regular-looking forms that mean something else.
var notInflections = set(`news goods rights shorts ones ends`)

func isVowel(c byte) bool { return strings.IndexByte("aeiou", c) >= 0 }

// stopwords carry no subject of their own: function words and the framing
// of requests ("can you", "please", "tell me"). Every other plain word is a
// content word, and two messages may not swap content words (see
// features.content).
var stopwords = set(`
	a an the this that these those there here it its it's is are was were be been being am
	do does did doing done have has had having can could would will shall should may might must
	i me my mine myself we us our ours you your yours yourself he's she's they're
	what whats what's which who whom whose when where why how whether if then than so as
	to of in into onto at by for from with about over under between through during per via
	and or but also too very just really quite only
	please pls thanks thank kindly hi hello hey ok okay
	tell say give show let get help want need like know think mean means find
	some any much many such own same other another each
	way ways thing things something anything one ones kind sort type
	up out down back again still yet ever
	turn switch toggle set put flip keep leave make
	e.g i.e etc vs
`)

// synonyms map a content word (after stem) to a shared stand-in, for
// rewordings common in requests.
var synonyms = map[string]string{
	"search": "find", "look": "find", "locate": "find", "lookup": "find",
	"wrote": "write", "written": "write", "writ": "write", "author": "write", "writer": "write",
	"draft": "write", "compose": "write",
	"describe": "explain", "explanation": "explain", "clarify": "explain",
	"provide": "give", "suggest": "recommend", "recommendation": "recommend",
	"correct": "fix", "repair": "fix", "resolve": "fix",
	"summary": "summarize", "summarization": "summarize",
	"translation": "translate",
	"cost":        "price", "priced": "price",
	"picture": "image", "photo": "image",
	"automobile": "car",
	"reply":      "answer", "respond": "answer", "response": "answer",
}
