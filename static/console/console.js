// The console's few behaviours; every page works without them.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  // A form marked data-confirm asks once more before it is sent. The server
  // still shows its own confirmation page to anyone without JavaScript.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
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
