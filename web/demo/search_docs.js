// The search page's bundled documents: short passages on unrelated topics, so a query has one
// clearly right answer.
export const DOCUMENTS = [
  "Paris is the capital and most populous city of France, on the river Seine.",
  "The Great Barrier Reef, off the coast of Queensland, is the largest coral reef system in the world.",
  "Photosynthesis lets plants turn sunlight, water and carbon dioxide into glucose and oxygen.",
  "Mount Everest, in the Himalayas, is the highest mountain above sea level at 8,849 metres.",
  "The Python programming language was created by Guido van Rossum and first released in 1991.",
  "A sourdough starter is a fermented mix of flour and water that leavens bread without commercial yeast.",
  "The Moon orbits the Earth about once every 27 days and always shows us the same face.",
  "Regular exercise strengthens the heart, lowers blood pressure and improves sleep.",
  "The violin is a string instrument played with a bow; it is the smallest member of its family.",
  "Tokyo, the capital of Japan, is one of the largest metropolitan areas on Earth.",
  "Bees pollinate flowers while collecting nectar, which they turn into honey.",
  "WebAssembly is a binary instruction format that browsers run at near-native speed.",
];
