# OPA's bundle signature check (open-policy-agent/opa bundle/verify.go, hash.go), in Rego,
# run by the real engine in tests/bundle/test_signatures_in_opa.py.
#
# input.files:      every file of the OPA bundle, name (relative to the root) -> text
# input.public_key: the published PEM public key; input.alg: "ES256" or "RS256"
# input.scope:      the scope OPA's signing config names ("" when none)
package bundle_verify

import rego.v1

signatures := json.unmarshal(input.files[".signatures.json"]).signatures

errors contains "missing JWT (expected exactly one)" if count(signatures) == 0

errors contains "multiple JWTs not supported (expected exactly one)" if count(signatures) > 1

# decode_verify checks the signature with the key and that the header's alg is the configured one.
verified := io.jwt.decode_verify(signatures[0], {"cert": input.public_key, "alg": input.alg})

claims := verified[2] if verified[0]

errors contains "signature does not verify with the configured key" if not verified[0]

errors contains "scope mismatch" if object.get(claims, "scope", "") != input.scope

listed := {entry.name: entry | some entry in claims.files}

errors contains sprintf("%s: not included in bundle signature", [name]) if {
	some name, _ in input.files
	name != ".signatures.json"
	not listed[name]
}

errors contains sprintf("%s: specified in the signature but not found in the bundle", [name]) if {
	some name, _ in listed
	not input.files[name]
}

errors contains sprintf("%s: unsupported hashing algorithm %s", [name, entry.algorithm]) if {
	some name, entry in listed
	entry.algorithm != "SHA-256"
}

errors contains sprintf("%s: digest mismatch (want %s, got %s)", [name, entry.hash, digest(name)]) if {
	some name, entry in listed
	input.files[name]
	entry.hash != digest(name)
}

# bundle.IsStructuredDoc: these are hashed as their parsed value, the rest as bytes.
structured(name) if {
	base := regex.replace(name, `^.*/`, "")
	base in {"data.json", "data.yaml", ".manifest"}
}

digest(name) := crypto.sha256(input.files[name]) if not structured(name)

digest(name) := crypto.sha256(canonical(json.unmarshal(input.files[name]))) if {
	structured(name)
	not endswith(name, ".yaml")
}

digest(name) := crypto.sha256(canonical(yaml.unmarshal(input.files[name]))) if {
	structured(name)
	endswith(name, ".yaml")
}

# OPA's hash walk writes objects with sorted keys and no whitespace, and each
# primitive with Go's JSON encoder with HTML escaping off. json.marshal is the
# same encoder with keys sorted, but HTML escaping on (<, >, & as \u003c, \u003e,
# \u0026). Splitting its text into escape sequences and plain runs (every
# backslash in the output starts an escape: \uXXXX or \ plus one character) and
# turning exactly those three escapes back gives OPA's text, byte for byte.
canonical(value) := concat("", [_unescaped(token) | some token in regex.find_n(`\\u[0-9a-f]{4}|\\.|[^\\]+`, json.marshal(value), -1)])

_html_escapes := {`\u003c`: "<", `\u003e`: ">", `\u0026`: "&"}

_unescaped(token) := object.get(_html_escapes, token, token)
