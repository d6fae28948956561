/* Search from disk. Sphinx's search fetches each hit's page to show a snippet of it; a browser refuses fetch()
   for file:// pages ("Failed to fetch"). The build writes every page's text to fmlearn-search-pages.js; here
   fetch() answers those requests from it, and leaves every other request to the browser. */
(() => {
  const pages = window.FMLEARN_PAGES || {};
  const fetchFromNetwork = window.fetch.bind(window);
  window.fetch = (resource, init) => {
    const url = new URL(typeof resource === "string" ? resource : resource.url, document.baseURI);
    const root = new URL(document.documentElement.dataset.content_root || "./", document.baseURI);
    const key = decodeURIComponent(url.href.startsWith(root.href) ? url.href.slice(root.href.length) : "");
    if (key in pages) {
      return Promise.resolve(new Response(pages[key], {status: 200, headers: {"Content-Type": "text/html"}}));
    }
    return fetchFromNetwork(resource, init);
  };
})();
