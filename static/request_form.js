// Repeatable destination rows and live validation for the request form.
// The form works without this script; it only adds rows and previews risk.
(function () {
  "use strict";
  const form = document.getElementById("request-form");
  if (!form) return;
  const rows = document.getElementById("destinations");
  const template = document.getElementById("destination-template");
  const total = form.querySelector("input[name='dest-TOTAL_FORMS']");

  function renumber() {
    rows.querySelectorAll(".destination").forEach(function (row, index) {
      row.querySelectorAll("[name], [id], label[for]").forEach(function (el) {
        ["name", "id", "for"].forEach(function (attr) {
          const value = el.getAttribute(attr);
          if (value) el.setAttribute(attr, value.replace(/dest-(\d+|__prefix__)-/, "dest-" + index + "-"));
        });
      });
    });
    total.value = rows.querySelectorAll(".destination").length;
  }

  document.getElementById("add-destination").addEventListener("click", function () {
    rows.appendChild(template.content.cloneNode(true));
    renumber();
    const hosts = rows.querySelectorAll("input[name$='-host']");
    hosts[hosts.length - 1].focus();
  });
  rows.addEventListener("click", function (event) {
    if (!event.target.classList.contains("remove-row")) return;
    if (rows.querySelectorAll(".destination").length <= 1) return;
    event.target.closest(".destination").remove();
    renumber();
    preview();
  });

  // The fields the live preview checks. Its answer replaces whatever errors
  // those fields showed (server-side or earlier live ones), so each error
  // appears once, in one wording.
  function previewedInputs() {
    return Array.from(form.querySelectorAll(
      "input[name$='-host'], input[name$='-port'], [name='lifetime_value'], [name='workload']"
    )).filter(function (input) { return !input.closest("template"); });
  }

  function describe(input, errorsId) {
    const ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
      return id && !id.endsWith("_errors");
    });
    if (errorsId) ids.push(errorsId);
    if (ids.length) input.setAttribute("aria-describedby", ids.join(" "));
    else input.removeAttribute("aria-describedby");
    if (errorsId) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  // Whether the preview's answer covers this input: a destination it checked, a
  // lifetime it compared with the cap, a workload it refused. An empty field's
  // "required" from the server stays until the form is sent again.
  function answered(input, errors, risk) {
    if (!input.value.trim()) return false;
    if (/-(host|port)$/.test(input.name)) return true;
    if (input.name === "lifetime_value") return Boolean(risk || errors.lifetime);
    return Boolean(errors[input.name]);
  }

  function showErrors(errors, risk) {
    previewedInputs().forEach(function (input) {
      const field = input.closest(".field");
      if (!answered(input, errors, risk) && !field.querySelector(".live-error")) return;
      field.querySelectorAll(".errors").forEach(function (el) { el.remove(); });
      field.classList.remove("has-error");
      describe(input, null);
    });
    Object.keys(errors).forEach(function (key) {
      let input = null;
      const match = key.match(/^destinations\[(\d+)\]\.(\w+)$/);
      if (match) input = form.querySelector("[name='dest-" + match[1] + "-" + match[2] + "']");
      else if (key === "lifetime") input = form.querySelector("[name='lifetime_value']");
      else input = form.querySelector("[name='" + key + "']");
      if (!input) return;
      const field = input.closest(".field");
      const box = document.createElement("div");
      box.className = "errors live-error";
      box.id = input.id + "_errors";
      errors[key].forEach(function (message) {
        const p = document.createElement("p");
        p.className = "error";
        p.setAttribute("role", "alert");
        p.dataset.field = input.name.replace(/^dest-\d+-/, "");
        p.textContent = message;
        box.appendChild(p);
      });
      field.appendChild(box);
      field.classList.add("has-error");
      describe(input, box.id);
    });
  }

  let timer = null;
  function preview() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      const params = new URLSearchParams();
      ["workload", "purpose", "data_class", "lifetime_value", "lifetime_unit"].forEach(function (name) {
        const el = form.querySelector("[name='" + name + "']");
        if (el) params.append(name, el.value);
      });
      rows.querySelectorAll(".destination").forEach(function (row) {
        params.append("host", row.querySelector("input[name$='-host']").value);
        params.append("port", row.querySelector("input[name$='-port']").value);
      });
      fetch(form.dataset.previewUrl + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (body) {
          showErrors(body.errors || {}, body.risk);
          const summary = document.getElementById("risk-summary");
          const reasons = document.getElementById("risk-reasons");
          reasons.innerHTML = "";
          if (!body.risk) {
            // No tier until the workload is chosen and every destination is valid.
            summary.textContent = summary.dataset.prompt;
            return;
          }
          summary.innerHTML = "";
          const tier = document.createElement("span");
          tier.className = "tier tier-" + body.risk.tier;
          tier.textContent = body.risk.tier;
          summary.append("Risk tier ", tier, " · lifetime cap " + body.risk.lifetime_cap);
          body.risk.reasons.forEach(function (reason) {
            const li = document.createElement("li");
            li.textContent = reason;
            reasons.appendChild(li);
          });
          if (body.approval) {
            const rule = document.createElement("li");
            rule.id = "approval-preview";
            rule.textContent = "Approval rule " + body.approval.rule + ": needs " + body.approval.needs + ".";
            const live = document.createElement("li");
            live.id = "go-live-preview";
            live.textContent = "If approved now, goes live " +
              (body.approval.go_live.at ? body.approval.go_live.at_display + " (" + body.approval.go_live.reason + ")" : "not yet: " + body.approval.go_live.reason) + ".";
            reasons.append(rule, live);
          }
        })
        .catch(function () { /* preview is advisory; submit still validates */ });
    }, 250);
  }
  form.addEventListener("input", preview);
  form.addEventListener("change", preview);
  preview();
})();
