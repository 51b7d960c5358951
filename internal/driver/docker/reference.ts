// Whether a manifest's image names an image the Docker Engine will accept, by the grammar of
// Docker's distribution/reference (the engine's own parser), so a build is refused when it is
// submitted rather than when a worker asks the engine for its image.
//
//   reference  := name [ ":" tag ] [ "@" digest ]
//   name       := [ domain "/" ] path-component [ "/" path-component ]*
//   domain     := host [ ":" port ]      (lower or upper case, dots, dashes, or an [IPv6] address)
//   path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//   digest     := algorithm ":" [0-9a-fA-F]{32,}

const alphaNumeric = "[a-z0-9]+";
const separator = "(?:[._]|__|[-]+)";
const pathComponent = `${alphaNumeric}(?:${separator}${alphaNumeric})*`;
const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domainName = `${domainComponent}(?:\\.${domainComponent})*`;
const ipv6 = "\\[(?:[a-fA-F0-9:]+)\\]";
const domain = `(?:${domainName}|${ipv6})(?::[0-9]+)?`;
const tag = "[\\w][\\w.-]{0,127}";
const digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
const name = `(?:${domain}/)?${pathComponent}(?:/${pathComponent})*`;
const REFERENCE = new RegExp(`^(${name})(?::(${tag}))?(?:@(${digest}))?$`);

/** Docker's limit on the name part (without tag and digest). */
const NAME_MAX = 255;

/** Why `image` is not an image reference the engine accepts; undefined when it is one. */
export function imageReferenceProblem(image: string): string | undefined {
  const m = REFERENCE.exec(image);
  if (!m) {
    const hint = /[A-Z]/.test(image.split(/[:@]/)[0].split("/").slice(1).join("/") || (image.includes("/") ? "" : image.split(/[:@]/)[0]))
      ? ": repository names are lower case"
      : "";
    return `${JSON.stringify(image)} is not an image reference the Docker Engine accepts (name[:tag][@digest], e.g. debian:12 or registry.example.com/team/app:1.2)${hint}`;
  }
  if (m[1].length > NAME_MAX) return `${JSON.stringify(image.slice(0, 40))}... is not an image reference the Docker Engine accepts: its repository name is longer than ${NAME_MAX} characters`;
  return undefined;
}
