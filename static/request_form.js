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

  function showErrors(errors) {
    form.querySelectorAll(".live-error").forEach(function (el) { el.remove(); });
    Object.keys(errors).forEach(function (key) {
      let input = null;
      const match = key.match(/^destinations\[(\d+)\]\.(\w+)$/);
      if (match) input = form.querySelector("[name='dest-" + match[1] + "-" + match[2] + "']");
      else if (key === "lifetime") input = form.querySelector("[name='lifetime_value']");
      if (!input) return;
      errors[key].forEach(function (message) {
        const p = document.createElement("p");
        p.className = "error live-error";
        p.setAttribute("role", "alert");
        p.textContent = message;
        input.closest(".field").appendChild(p);
      });
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
          showErrors(body.errors || {});
          const summary = document.getElementById("risk-summary");
          const reasons = document.getElementById("risk-reasons");
          reasons.innerHTML = "";
          if (!body.risk) return;
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
              (body.approval.go_live.at ? new Date(body.approval.go_live.at).toLocaleString() + " (" + body.approval.go_live.reason + ")" : "not yet: " + body.approval.go_live.reason) + ".";
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
