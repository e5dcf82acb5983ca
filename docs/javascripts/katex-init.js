// Render the math that pymdownx.arithmatex (generic mode) leaves in .arithmatex
// elements, with the KaTeX copy served by this site (no network needed).
(function () {
  var delimiters = [
    { left: "\\(", right: "\\)", display: false },
    { left: "\\[", right: "\\]", display: true },
  ];

  function render(root) {
    if (typeof renderMathInElement !== "function") return false;
    var nodes = (root || document).querySelectorAll(".arithmatex");
    for (var i = 0; i < nodes.length; i++) {
      renderMathInElement(nodes[i], { delimiters: delimiters, throwOnError: false });
    }
    return true;
  }

  function renderWhenReady(root) {
    if (!render(root)) {
      window.addEventListener("load", function () { render(root); });
    }
  }

  if (typeof document$ !== "undefined") {
    // mkdocs-material: re-render after every instant-navigation page change.
    document$.subscribe(function (doc) { renderWhenReady(doc && doc.body ? doc.body : document.body); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { renderWhenReady(document.body); });
  } else {
    renderWhenReady(document.body);
  }
})();
