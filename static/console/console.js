// The console's few behaviours; every page works without them.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  // A delete link leads to a confirmation page. With JavaScript, a dialog
  // asks instead and, if confirmed, posts to that page's URL right away.
  document.querySelectorAll("a[data-confirm-post]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      var token = document.querySelector("input[name=csrfmiddlewaretoken]");
      if (!token) {
        return; // no token to send: let the confirmation page ask
      }
      event.preventDefault();
      if (!window.confirm(link.getAttribute("data-confirm-post"))) {
        return;
      }
      var form = document.createElement("form");
      form.method = "post";
      form.action = link.href;
      var field = document.createElement("input");
      field.type = "hidden";
      field.name = "csrfmiddlewaretoken";
      field.value = token.value;
      form.appendChild(field);
      document.body.appendChild(form);
      form.submit();
    });
  });

  // One click sends a form once: disable its buttons after the submit.
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) {
        return;
      }
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (button) {
          button.disabled = true;
        });
      }, 0);
    });
  });

  // The addresses box grows with its content, one address per line.
  document.querySelectorAll("textarea[data-autogrow]").forEach(function (area) {
    var grow = function () {
      area.style.height = "auto";
      area.style.height = Math.max(area.scrollHeight + 2, 82) + "px";
    };
    area.addEventListener("input", grow);
    grow();
  });

  // Focus the first field that has an error, so the message is where the eye is.
  var firstError = document.querySelector(".has-error input, .has-error select, .has-error textarea");
  if (firstError) {
    firstError.focus();
  }
});
