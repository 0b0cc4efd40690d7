// Live updates: the server's event stream says "your work changed"; a page with a work list or the
// overview fetches it again (htmx, trigger "werk-gewijzigd"); a contact page says it changed. One
// stream per page load: it stays open while hx-boost swaps pages. EventSource reconnects by itself
// after a drop; once back, the lists are fetched again, since events may have been missed meanwhile.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-live");
  if (!url || !window.EventSource) return;
  var dropped = false;
  var source = new EventSource(url);
  function say(text) {
    var status = document.getElementById("live-status");
    if (status) status.textContent = text;
  }
  function changed() { document.body.dispatchEvent(new CustomEvent("werk-gewijzigd", { bubbles: true })); }
  source.addEventListener("open", function () {
    if (dropped) { say("Weer verbonden. De gegevens zijn bijgewerkt."); changed(); }
    dropped = false;
  });
  source.addEventListener("error", function () {
    dropped = true;
    say("De verbinding is even weg. We proberen het opnieuw.");
  });
  source.addEventListener("werk", function (e) {
    var data = {};
    try { data = JSON.parse(e.data); } catch (err) { return; }
    var main = document.getElementById("inhoud");
    var contact = main && main.getAttribute("data-contact");
    if (contact) {
      if (data.contact_id === contact) say("Dit contact is net gewijzigd. Laad de pagina opnieuw om het te zien.");
      return;
    }
    changed();
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
